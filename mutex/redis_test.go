package mutex_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/mutex"
)

// redisClient connects to TEST_REDIS_URL, or skips the test.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis at TEST_REDIS_URL: %v", err)
	}
	return c
}

// testPrefix keeps each test's keys apart from every other's.
func testPrefix() string { return "authsvc-test:" + rand.Text()[:10] + ":" }

func TestRedis(t *testing.T) {
	c := redisClient(t)
	testLocker(t, func(t *testing.T, timeout time.Duration) locker {
		return mutex.NewRedis(c, mutex.RedisOptions{Timeout: timeout, Prefix: testPrefix()})
	})
}

// TestRedisAcrossProcesses: two lockers on one Redis stand for two
// instances; 2 × 150 goroutines increment a counter that only the lock
// protects.
func TestRedisAcrossProcesses(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	instances := []*mutex.Redis{
		mutex.NewRedis(c, mutex.RedisOptions{Timeout: time.Minute, Prefix: prefix}),
		mutex.NewRedis(c, mutex.RedisOptions{Timeout: time.Minute, Prefix: prefix}),
	}
	var (
		counter int
		inside  atomic.Int32
		overlap atomic.Int32
		start   = make(chan struct{})
		wg      sync.WaitGroup
		errs    = make(chan error, 300)
	)
	for i := range 300 {
		wg.Go(func() {
			<-start
			errs <- instances[i%2].WithLock(t.Context(), "shared", func(context.Context) error {
				if inside.Add(1) != 1 {
					overlap.Add(1)
				}
				v := counter
				time.Sleep(0)
				counter = v + 1
				inside.Add(-1)
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("WithLock = %v", err)
		}
	}
	if counter != 300 || overlap.Load() != 0 {
		t.Errorf("counter = %d with %d overlaps, want 300 and 0", counter, overlap.Load())
	}
	if n, _ := c.Exists(t.Context(), prefix+"shared").Result(); n != 0 {
		t.Error("the key is still in Redis after every holder left")
	}
}

// A holder that dies without releasing loses the lock when its lease ends.
// The waiter is told not to give up on the holder (AbandonAfter longer than
// the test), so only the lease's end lets it in.
func TestRedisDeadHolder(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	if err := c.Set(t.Context(), prefix+"k", "crashed-process", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	l := mutex.NewRedis(c, mutex.RedisOptions{Timeout: time.Minute, AbandonAfter: time.Hour, Prefix: prefix})
	ran := false
	if err := l.WithLock(t.Context(), "k", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("WithLock after the dead holder's lease = %v, ran %v; want nil, true", err, ran)
	}
}

// The lease is renewed while fn runs: each renewal puts the key's expiry a
// whole lease ahead again, so a holder keeps its lock past its first lease.
// The test decides when renewals happen, and stands for the time that passes
// between them by shortening the key's lease in Redis.
func TestRedisLeaseRenewed(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	// Loaded first, so that every renewal goes through EvalSha, which the spy sees.
	if err := mutex.ExtendScript.Load(t.Context(), c).Err(); err != nil {
		t.Fatal(err)
	}
	renewed := make(chan int64)
	spy := &scriptClient{Client: c}
	spy.evalSha = func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
		cmd := c.EvalSha(ctx, sha, keys, args...)
		if sha == mutex.ExtendScript.Hash() {
			n, err := cmd.Int64()
			if err != nil {
				n = -1
			}
			renewed <- n
		}
		return cmd
	}
	const lease = time.Minute
	holder := mutex.NewRedis(spy, mutex.RedisOptions{Lease: lease, Prefix: prefix})
	ticks := make(chan time.Time)
	holder.RenewOn(ticks)
	err := holder.WithLock(t.Context(), "k", func(ctx context.Context) error {
		for i := 1; i <= 3; i++ {
			// As if all but a second of the lease had passed.
			if err := c.PExpire(ctx, prefix+"k", time.Second).Err(); err != nil {
				return err
			}
			ticks <- time.Now()
			if n := <-renewed; n != 1 {
				return fmt.Errorf("renewal %d answered %d, want 1: the key was no longer the holder's", i, n)
			}
			if ttl := c.PTTL(ctx, prefix+"k").Val(); ttl <= time.Second {
				return fmt.Errorf("lease after renewal %d = %v, want it back near %v", i, ttl, lease)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithLock = %v", err)
	}
	if n, _ := c.Exists(t.Context(), prefix+"k").Result(); n != 0 {
		t.Error("the key is still in Redis after the holder left")
	}
}

// A lost lease does not interrupt the holder: the lock saves work, and the
// caller's own compare-and-swap keeps it correct. Another process may take
// the key meanwhile; WithLock then returns fn's error joined with
// ErrLeaseLost, and the first holder's release leaves the new holder's key
// alone.
func TestRedisLeaseLost(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	first := mutex.NewRedis(c, mutex.RedisOptions{Lease: time.Minute, Prefix: prefix})
	second := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 5 * time.Second, Prefix: prefix})
	for _, fnErr := range []error{nil, errors.New("fn's own failure")} {
		secondRan, finished := false, false
		err := first.WithLock(t.Context(), "k", func(ctx context.Context) error {
			// As a lease that ran out would: the key goes, and another process takes it.
			if err := c.Del(ctx, prefix+"k").Err(); err != nil {
				return err
			}
			if err := second.WithLock(ctx, "k", func(context.Context) error { secondRan = true; return nil }); err != nil {
				return err
			}
			// A third process holds the key as the first holder returns.
			if err := c.Set(ctx, prefix+"k", "third-holder", time.Minute).Err(); err != nil {
				return err
			}
			finished = ctx.Err() == nil
			return fnErr
		})
		if !errors.Is(err, mutex.ErrLeaseLost) || (fnErr != nil && !errors.Is(err, fnErr)) {
			t.Errorf("WithLock with its lease lost = %v, want fn's error (%v) and ErrLeaseLost", err, fnErr)
		}
		if !secondRan || !finished {
			t.Errorf("second holder ran: %v; fn ran to its end uninterrupted: %v; want true, true", secondRan, finished)
		}
		if v := c.Get(t.Context(), prefix+"k").Val(); v != "third-holder" {
			t.Errorf("key = %q after the first holder's release, want the third holder's key left alone", v)
		}
		c.Del(t.Context(), prefix+"k")
	}
}

// A renewal that finds the key gone is a lost lease even when Redis cannot
// be reached for the release. A renewal that cannot reach Redis says
// nothing about the lease, and no loss is reported.
func TestRedisLeaseLostSeenByRenewal(t *testing.T) {
	c := redisClient(t)
	// Loaded first, so that every renewal goes through EvalSha, which the spy sees.
	if err := mutex.ExtendScript.Load(t.Context(), c).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		keyGone  bool // the key expired before the renewal
		wantLost bool
	}{
		{name: "renewal finds the key gone", keyGone: true, wantLost: true},
		{name: "renewal cannot reach Redis", keyGone: false, wantLost: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := testPrefix()
			var down atomic.Bool
			renewed := make(chan struct{})
			flaky := &scriptClient{Client: c}
			flaky.evalSha = func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
				if sha == mutex.ExtendScript.Hash() {
					defer func() { renewed <- struct{}{} }()
				}
				if down.Load() {
					cmd := redis.NewCmd(ctx)
					cmd.SetErr(errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"))
					return cmd
				}
				return c.EvalSha(ctx, sha, keys, args...)
			}
			l := mutex.NewRedis(flaky, mutex.RedisOptions{Lease: time.Minute, Prefix: prefix})
			ticks := make(chan time.Time)
			l.RenewOn(ticks)
			err := l.WithLock(t.Context(), "k", func(ctx context.Context) error {
				if tc.keyGone {
					if err := c.Del(ctx, prefix+"k").Err(); err != nil {
						return err
					}
				} else {
					down.Store(true)
				}
				ticks <- time.Now()
				<-renewed
				down.Store(true) // the release cannot reach Redis either
				return nil
			})
			if lost := errors.Is(err, mutex.ErrLeaseLost); lost != tc.wantLost {
				t.Errorf("WithLock = %v; ErrLeaseLost %v, want %v", err, lost, tc.wantLost)
			}
			if err != nil && !tc.wantLost {
				t.Errorf("WithLock = %v, want nil: fn succeeded and no loss was seen", err)
			}
			c.Del(t.Context(), prefix+"k")
		})
	}
}

// A holder that left its key without renewing it (a crashed process with a
// long lease) is given up on with ErrAbandoned, long before its lease ends;
// fn does not run.
func TestRedisAbandoned(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	if err := c.Set(t.Context(), prefix+"k", "crashed-process", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	l := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 30 * time.Second, Lease: 600 * time.Millisecond, Prefix: prefix})
	ran := false
	err := l.WithLock(t.Context(), "k", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, mutex.ErrAbandoned) || ran {
		t.Fatalf("WithLock on an abandoned key = %v, ran %v; want ErrAbandoned, false", err, ran)
	}
	if ttl := c.PTTL(t.Context(), prefix+"k").Val(); ttl < 30*time.Second {
		t.Errorf("the abandoned key's lease is %v: WithLock waited for it instead of giving up", ttl)
	}
}

// scriptClient wraps a real client so that a test can see or change what the
// lock's scripts answer.
type scriptClient struct {
	*redis.Client
	evalSha func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd
}

func (s *scriptClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return s.evalSha(ctx, sha, keys, args...)
}

// A waiter's fn learns that it waited for another holder; an uncontended
// holder's fn does not.
func TestRedisContended(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	refused := make(chan struct{}) // the waiter's first "held by another" answer
	var once sync.Once
	spy := &scriptClient{Client: c}
	spy.evalSha = func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
		cmd := c.EvalSha(ctx, sha, keys, args...)
		if v, err := cmd.Int64Slice(); err == nil && len(v) == 2 && v[0] == 0 {
			once.Do(func() { close(refused) })
		}
		return cmd
	}
	holder := mutex.NewRedis(c, mutex.RedisOptions{Prefix: prefix})
	waiter := mutex.NewRedis(spy, mutex.RedisOptions{Timeout: 10 * time.Second, Prefix: prefix})
	waited := make(chan bool, 1)
	err := holder.WithLock(t.Context(), "k", func(ctx context.Context) error {
		if mutex.Contended(ctx) {
			return errors.New("the uncontended holder's fn was told it waited")
		}
		go func() {
			waited <- waiter.WithLock(t.Context(), "k", func(ctx context.Context) error {
				if !mutex.Contended(ctx) {
					return errors.New("the waiter's fn was not told it waited")
				}
				return nil
			}) == nil
		}()
		<-refused
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !<-waited {
		t.Error("the waiter failed")
	}
}

// Acquiring is idempotent: when Redis applied an acquire whose reply was
// lost and the client sends it again, the retry sees the lock is its own
// instead of waiting for its own lease to run out.
func TestRedisAcquireIsIdempotent(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	var calls atomic.Int32
	lossy := &scriptClient{Client: c}
	lossy.evalSha = func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
		if calls.Add(1) == 1 {
			_ = c.EvalSha(ctx, sha, keys, args...).Err() // applied; the reply is lost and the client retries
		}
		return c.EvalSha(ctx, sha, keys, args...)
	}
	l := mutex.NewRedis(lossy, mutex.RedisOptions{Timeout: 10 * time.Second, Prefix: prefix})
	err := l.WithLock(t.Context(), "k", func(ctx context.Context) error {
		if mutex.Contended(ctx) {
			return errors.New("the retried acquire waited for its own lock")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithLock after a lost acquire reply = %v", err)
	}
}

// While Redis fails, the circuit breaker answers ErrUnavailable without
// asking Redis, the state change is reported once, and the lock works again
// once Redis answers, without a restart.
func TestRedisBreaker(t *testing.T) {
	c := redisClient(t)
	var down atomic.Bool
	var asked atomic.Int32
	flaky := &scriptClient{Client: c}
	flaky.evalSha = func(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
		asked.Add(1)
		if down.Load() {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"))
			return cmd
		}
		return c.EvalSha(ctx, sha, keys, args...)
	}
	changes := make(chan error, 10)
	l := mutex.NewRedis(flaky, mutex.RedisOptions{
		Timeout: 5 * time.Second, Cooldown: 200 * time.Millisecond, Prefix: testPrefix(),
		OnStateChange: func(err error) { changes <- err },
	})
	ran := 0
	fn := func(context.Context) error { ran++; return nil }

	down.Store(true)
	for range 100 {
		if err := l.WithLock(t.Context(), "k", fn); !errors.Is(err, mutex.ErrUnavailable) {
			t.Fatalf("WithLock with Redis down = %v, want ErrUnavailable", err)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("Redis was asked %d times for 100 locks while it failed, want 1 (the breaker opens)", n)
	}
	if err := <-changes; err == nil {
		t.Error("OnStateChange(nil) when Redis went down, want its error")
	}
	if ran != 0 {
		t.Errorf("fn ran %d times without the lock", ran)
	}

	down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for l.WithLock(t.Context(), "k", fn) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the lock never recovered after Redis came back")
		}
		time.Sleep(50 * time.Millisecond) // the breaker's cooldown runs on the real clock
	}
	if err := <-changes; err != nil {
		t.Errorf("OnStateChange(%v) when Redis came back, want nil", err)
	}
	if len(changes) != 0 {
		t.Errorf("%d more state changes, want one down and one up", len(changes))
	}
	if ran != 1 {
		t.Errorf("fn ran %d times, want 1", ran)
	}
}

// An unreachable Redis is ErrUnavailable, and fn does not run.
func TestRedisUnavailable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	l := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 5 * time.Second})
	ran := false
	err := l.WithLock(t.Context(), "k", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, mutex.ErrUnavailable) || ran {
		t.Errorf("WithLock with Redis down = %v, ran %v; want ErrUnavailable, false", err, ran)
	}
	if l.IsLocked("k") || l.ActiveLockCount() != 0 {
		t.Error("a failed acquisition left the key held locally")
	}
	if err := l.Ping(t.Context()); !errors.Is(err, mutex.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
}
