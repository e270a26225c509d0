package cluster

import (
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The service's defaults, which the tests run with.
const (
	// lockLease is how long a lock in Redis outlives a holder that died: the
	// default lease of mutex.Redis, which main.go keeps. A waiter gives up on
	// such a holder after half of it (mutex.ErrAbandoned).
	lockLease = 3 * time.Second
	// lockTimeout is LOCK_TIMEOUT's default: the longest a refresh waits
	// for a token's lock.
	lockTimeout = 5 * time.Second
	// reuseWindow is REFRESH_REUSE_WINDOW's default: how long a rotated
	// token still answers with its successor.
	reuseWindow = 10 * time.Second
)

// newEmail returns an address no other test uses.
func newEmail() string { return "u-" + strings.ToLower(rand.Text()[:12]) + "@example.com" }

// TestClusterFaults runs 40 clients chaining refreshes round-robin over three
// instances while, round after round, an instance or Redis is killed and
// brought back. A client that loses a response to a killed instance presents
// the same token to the next one. After each round every client must still
// hold a working token; throughout, no token may rotate to two different
// successors, and nothing but the killed process may fail a request.
func TestClusterFaults(t *testing.T) {
	const (
		clients   = 40
		killAfter = 500 * time.Millisecond // earliest kill in a round; the latest is 2 s later
		keepGoing = time.Second            // load on one instance fewer before the restart
		settle    = 1500 * time.Millisecond
	)
	c := newCluster(t, 3)
	c.start(t)
	l := newLoad(t, c.instances, clients)
	seed := uint64(time.Now().UnixNano())
	rng := mathrand.New(mathrand.NewPCG(seed, seed))
	t.Logf("%d clients over %d instances; fault timings from seed %d", clients, len(c.instances), seed)

	pause := func(d time.Duration) time.Duration { time.Sleep(d); return d }
	randomMoment := func() time.Duration { return pause(killAfter + time.Duration(rng.Int64N(int64(2*time.Second)))) }
	killInstance := func(in *instance) fault {
		return func() (string, error) {
			at := randomMoment()
			in.kill()
			pause(keepGoing)
			restart := time.Now()
			if err := in.start(t.Context()); err != nil {
				return "", err
			}
			healthy := time.Since(restart)
			pause(settle)
			return fmt.Sprintf("kill %s at %v, down %v, healthy %v after restart", in.name, at.Round(time.Millisecond), (keepGoing + healthy).Round(time.Millisecond), healthy.Round(time.Millisecond)), nil
		}
	}
	killRedis := func() (string, error) {
		at := randomMoment()
		c.redis.kill()
		down := pause(2*time.Second + time.Duration(rng.Int64N(int64(time.Second))))
		if err := c.redis.start(t.Context()); err != nil {
			return "", err
		}
		pause(settle)
		return fmt.Sprintf("kill redis at %v for %v", at.Round(time.Millisecond), down.Round(time.Millisecond)), nil
	}
	victims := rng.Perm(len(c.instances))
	faults := []fault{killInstance(c.instances[victims[0]]), killRedis, killInstance(c.instances[victims[1]]), killRedis}

	for i, inject := range faults {
		phase := fmt.Sprintf("round %d", i+1)
		before := l.violations.count()
		stats, what, err := l.round(t.Context(), phase, inject)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		l.stats.Store(newRoundStats()) // the check's requests are not the round's
		ok := l.check(t.Context(), "check after "+phase)
		t.Logf("%s (%s): %s; check: %d/%d clients refreshed; %d violations", phase, what, stats, ok, clients, l.violations.count()-before)
	}
	if l.violations.count() > 0 {
		t.Errorf("%v", &l.violations)
	}
}

// TestClusterSimultaneousStart starts three instances at the same instant on
// an empty database, as a deployment does: all must come up and serve. A
// race at start is lost only now and then, so it runs a few times, each on a
// database of its own.
func TestClusterSimultaneousStart(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprintf("start%d", i+1), func(t *testing.T) {
			c := newCluster(t, 3)
			c.startTogether(t)
			a, b, third := c.instances[0], c.instances[1], c.instances[2]
			email := newEmail()
			if _, err := a.register(t.Context(), email); err != nil {
				t.Fatal(err)
			}
			tk, err := b.login(t.Context(), email)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := third.refresh(t.Context(), tk.RefreshToken); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestClusterDeadHolder: an instance that died holding a token's lock leaves
// it in Redis until its lease runs out. A refresh of that token on another
// instance must still answer 200 well within the reuse window, and a replay
// of the same token right after must answer with the same successor.
func TestClusterDeadHolder(t *testing.T) {
	const bound = 5 * time.Second // well within reuseWindow
	c := newCluster(t, 2)
	c.start(t)
	a, b := c.instances[0], c.instances[1]
	probe, err := a.register(t.Context(), newEmail())
	if err != nil {
		t.Fatal(err)
	}
	c.redis.refreshWatchingLock(t, b, probe.RefreshToken)

	tk, err := a.register(t.Context(), newEmail())
	if err != nil {
		t.Fatal(err)
	}
	c.redis.plantLock(t, tk.RefreshToken, lockLease)
	start := time.Now()
	next, err := b.refresh(t.Context(), tk.RefreshToken)
	elapsed := time.Since(start)
	t.Logf("refresh on B behind a dead holder's lock (lease %v, reuse window %v): answered after %v", lockLease, reuseWindow, elapsed.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("after %v: %v", elapsed.Round(time.Millisecond), err)
	}
	if elapsed >= bound {
		t.Errorf("the refresh took %v, want under %v", elapsed.Round(time.Millisecond), bound)
	}
	for _, in := range c.instances {
		again, err := in.refresh(t.Context(), tk.RefreshToken)
		switch {
		case err != nil:
			t.Errorf("replay: %v", err)
		case again.RefreshToken != next.RefreshToken:
			t.Errorf("replay on %s: successor %s, want %s", in.name, fingerprint(again.RefreshToken), fingerprint(next.RefreshToken))
		}
	}
}

// TestClusterReplayDuringHeldLock: a replay of a rotated token within the
// reuse window needs no lock, so it answers at once even while another
// holder has the token's lock.
func TestClusterReplayDuringHeldLock(t *testing.T) {
	const bound = time.Second // well under lockTimeout
	c := newCluster(t, 2)
	c.start(t)
	first, err := c.instances[0].register(t.Context(), newEmail())
	if err != nil {
		t.Fatal(err)
	}
	next := c.redis.refreshWatchingLock(t, c.instances[0], first.RefreshToken)
	c.redis.plantLock(t, first.RefreshToken, 30*time.Second)

	type result struct {
		in      *instance
		tk      tokens
		err     error
		elapsed time.Duration
	}
	results := make(chan result, len(c.instances))
	barrier := make(chan struct{})
	for _, in := range c.instances {
		go func() {
			<-barrier
			start := time.Now()
			tk, err := in.refresh(t.Context(), first.RefreshToken)
			results <- result{in, tk, err, time.Since(start)}
		}()
	}
	close(barrier)
	for range c.instances {
		r := <-results
		t.Logf("replay on %s while the lock is held (lock timeout %v): answered after %v", r.in.name, lockTimeout, r.elapsed.Round(time.Millisecond))
		switch {
		case r.err != nil:
			t.Errorf("after %v: %v", r.elapsed.Round(time.Millisecond), r.err)
		case r.tk.RefreshToken != next.RefreshToken:
			t.Errorf("replay on %s: successor %s, want %s", r.in.name, fingerprint(r.tk.RefreshToken), fingerprint(next.RefreshToken))
		case r.elapsed >= bound:
			t.Errorf("replay on %s took %v, want under %v", r.in.name, r.elapsed.Round(time.Millisecond), bound)
		}
	}
}
