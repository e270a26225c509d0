package tests

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const invalidRefresh = `{"message":"Invalid refresh token","error":"Unauthorized","statusCode":401}`

func wantInvalid(t *testing.T, what string, r response) {
	t.Helper()
	if r.Status != http.StatusUnauthorized || string(r.Body) != invalidRefresh {
		t.Errorf("%s = %s, want 401 %s", what, r, invalidRefresh)
	}
}

func TestRefreshRotation(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)

		t.Run("rotates to a new working pair", func(t *testing.T) {
			s := a.register(t)
			r := a.mustRefresh(t, s.RefreshToken)
			next := newToken(t, r)
			if next == s.RefreshToken || len(next) < 43 {
				t.Fatalf("successor %q: want a new token of 256 bits or more", next)
			}
			access, _ := r.json(t)["accessToken"].(string)
			if me, _ := a.do(http.MethodGet, "/auth/me", "", nil, "Authorization", "Bearer "+access); me.Status != http.StatusOK {
				t.Errorf("/auth/me with the refreshed access token = %s", me)
			}
			newToken(t, a.mustRefresh(t, next))
		})

		t.Run("reuse window returns the same successor", func(t *testing.T) {
			s := a.register(t)
			first := newToken(t, a.mustRefresh(t, s.RefreshToken))
			a.Clock.Advance(9 * time.Second)
			if again := newToken(t, a.mustRefresh(t, s.RefreshToken)); again != first {
				t.Fatalf("replay within the window = %q, want the same successor %q", again, first)
			}
			if rows := a.familyRows(t, s.RefreshToken); rows != 2 {
				t.Errorf("family rows after a replay = %d, want 2", rows)
			}
			newToken(t, a.mustRefresh(t, first)) // the successor still works
		})

		t.Run("replay after the window revokes the family", func(t *testing.T) {
			s := a.register(t)
			next := newToken(t, a.mustRefresh(t, s.RefreshToken))
			a.Clock.Advance(11 * time.Second)
			wantInvalid(t, "replay after the window", a.mustRefresh(t, s.RefreshToken))
			wantInvalid(t, "the successor after reuse was detected", a.mustRefresh(t, next))
		})

		t.Run("replay after the successor was used revokes the family", func(t *testing.T) {
			s := a.register(t)
			t1 := newToken(t, a.mustRefresh(t, s.RefreshToken))
			t2 := newToken(t, a.mustRefresh(t, t1))
			wantInvalid(t, "replay of the first token", a.mustRefresh(t, s.RefreshToken))
			wantInvalid(t, "the newest token after reuse was detected", a.mustRefresh(t, t2))
		})

		t.Run("replay after logout is refused", func(t *testing.T) {
			s := a.register(t)
			t1 := newToken(t, a.mustRefresh(t, s.RefreshToken))
			if r := a.mustPost(t, "/auth/logout", map[string]string{"refreshToken": t1}); r.Status != http.StatusNoContent {
				t.Fatalf("logout = %s", r)
			}
			wantInvalid(t, "replay within the window of a logged-out family", a.mustRefresh(t, s.RefreshToken))
		})

		t.Run("expired token", func(t *testing.T) {
			s := a.register(t)
			a.Clock.Advance(7*24*time.Hour + time.Second)
			wantInvalid(t, "refresh after REFRESH_EXPIRES_IN", a.mustRefresh(t, s.RefreshToken))
		})

		t.Run("unknown token", func(t *testing.T) {
			wantInvalid(t, "refresh of a token never issued", a.mustRefresh(t, "not-a-token-this-server-issued"))
		})

		t.Run("other families are untouched by reuse", func(t *testing.T) {
			s := a.register(t)
			login := a.mustPost(t, "/auth/login", map[string]string{"email": s.User["email"].(string), "password": "password123"})
			other := login.json(t)["refreshToken"].(string)
			newToken(t, a.mustRefresh(t, s.RefreshToken))
			a.Clock.Advance(time.Minute)
			wantInvalid(t, "reuse", a.mustRefresh(t, s.RefreshToken))
			newToken(t, a.mustRefresh(t, other))
		})
	})
}

func TestRefreshWithoutReuseWindow(t *testing.T) {
	cfg := defaultConfig()
	cfg.reuseWindow = 0
	a := newApp(t, cfg)
	s := a.register(t)
	next := newToken(t, a.mustRefresh(t, s.RefreshToken))
	wantInvalid(t, "immediate replay with REFRESH_REUSE_WINDOW=0", a.mustRefresh(t, s.RefreshToken))
	wantInvalid(t, "successor after reuse", a.mustRefresh(t, next))
}

func TestLogout(t *testing.T) {
	a := newApp(t, defaultConfig())
	logout := func(token string) response {
		t.Helper()
		return a.mustPost(t, "/auth/logout", map[string]string{"refreshToken": token})
	}
	s := a.register(t)
	t1 := newToken(t, a.mustRefresh(t, s.RefreshToken))
	t2 := newToken(t, a.mustRefresh(t, t1))
	login := a.mustPost(t, "/auth/login", map[string]string{"email": s.User["email"].(string), "password": "password123"})
	otherFamily := login.json(t)["refreshToken"].(string)

	r := logout(t1) // a rotated token names its family too
	if r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("logout = %s, want 204 and no body", r)
	}
	for name, tok := range map[string]string{"original": s.RefreshToken, "rotated": t1, "current": t2} {
		wantInvalid(t, "refresh with the "+name+" token after logout", a.mustRefresh(t, tok))
	}
	newToken(t, a.mustRefresh(t, otherFamily)) // another login's family lives on

	for name, tok := range map[string]string{"again": t2, "unknown": "garbage"} {
		if r := logout(tok); r.Status != http.StatusNoContent {
			t.Errorf("logout %s = %s, want 204 (idempotent)", name, r)
		}
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	a := newApp(t, defaultConfig())
	s := a.register(t)
	me := func() response {
		r, err := a.do(http.MethodGet, "/auth/me", "", nil, "Authorization", "Bearer "+s.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := me(); r.Status != http.StatusOK {
		t.Fatalf("/auth/me = %s", r)
	}
	a.Clock.Advance(15*time.Minute + time.Second)
	if r := me(); r.Status != http.StatusUnauthorized || string(r.Body) != `{"message":"Unauthorized","statusCode":401}` {
		t.Errorf("/auth/me after JWT_EXPIRES_IN = %s, want passport's 401", r)
	}
}

// TestRefreshIsolation refreshes many tokens in parallel: each rotates once,
// to its own successor.
func TestRefreshIsolation(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)
		const users, perToken = 50, 4
		tokens := make([]string, users)
		for i := range tokens {
			tokens[i] = a.register(t).RefreshToken
		}
		start := make(chan struct{})
		type result struct {
			i   int
			r   response
			err error
		}
		results := make(chan result, users*perToken)
		var wg sync.WaitGroup
		for i, tok := range tokens {
			for range perToken {
				wg.Go(func() {
					<-start
					r, err := a.refresh(tok)
					results <- result{i, r, err}
				})
			}
		}
		close(start)
		wg.Wait()
		close(results)
		successor := map[int]string{}
		seen := map[string]int{}
		for res := range results {
			if res.err != nil || res.r.Status != http.StatusOK {
				t.Errorf("refresh of token %d = %v %v, want 200", res.i, res.r, res.err)
				continue
			}
			tok := newToken(t, res.r)
			if prev, ok := successor[res.i]; ok && prev != tok {
				t.Errorf("token %d got two successors", res.i)
			}
			successor[res.i] = tok
			seen[tok] = res.i
		}
		if len(seen) != users {
			t.Errorf("%d distinct successors for %d tokens", len(seen), users)
		}
		if got := a.counter(t, "auth_refresh_total", "result", "rotated"); got != users {
			t.Errorf("rotations = %v, want %d", got, users)
		}
	})
}

// TestRefreshKeysDoNotWait holds one token's lock and shows that another
// token refreshes meanwhile, while the held one answers 503 with Retry-After
// once LOCK_TIMEOUT passes.
func TestRefreshKeysDoNotWait(t *testing.T) {
	cfg := defaultConfig()
	cfg.lockTimeout = 50 * time.Millisecond
	a := newApp(t, cfg)
	held, other := a.register(t), a.register(t)

	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Locks.WithLock(context.Background(), lockKey(held.RefreshToken), func(context.Context) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	if !a.Locks.IsLocked(lockKey(held.RefreshToken)) {
		t.Fatal("the held token's lock is not held")
	}
	newToken(t, a.mustRefresh(t, other.RefreshToken)) // not blocked by the held key

	r := a.mustRefresh(t, held.RefreshToken)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("refresh of a token whose lock stays held = %s (Retry-After %q), want 503 with Retry-After", r, r.Header.Get("Retry-After"))
	}
	if m := r.json(t); m["statusCode"] != float64(503) || m["error"] != "Service Unavailable" {
		t.Errorf("503 body = %s, want NestJS's shape", r.Body)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	newToken(t, a.mustRefresh(t, held.RefreshToken)) // nothing was consumed by the 503
}

// TestInstancesWithoutSharedLock runs two service instances over one database
// with no lock in common (each has its own in-process lock) and storms both
// with the same token: the compare-and-swap and the sealed successor alone
// keep every answer a 200 with the same successor.
func TestInstancesWithoutSharedLock(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)
		b := secondInstance(t, a, defaultConfig())
		s := a.register(t)

		var n sync.Mutex
		turn := 0
		both := func(token string) (response, error) {
			n.Lock()
			turn++
			inst := a
			if turn%2 == 0 {
				inst = b
			}
			n.Unlock()
			return inst.refresh(token)
		}
		rs, errs := storm(200, both, s.RefreshToken)
		for _, err := range errs {
			t.Errorf("transport error: %v", err)
		}
		successors := map[string]bool{}
		for _, r := range rs {
			successors[newToken(t, r)] = true
		}
		if len(successors) != 1 {
			t.Errorf("%d distinct successors across two instances, want 1", len(successors))
		}
		if rows := a.familyRows(t, s.RefreshToken); rows != 2 {
			t.Errorf("family rows = %d, want 2", rows)
		}
		for _, logs := range []string{a.Logs.String(), b.Logs.String()} {
			if strings.Contains(strings.ToLower(logs), "record not found") || strings.Contains(logs, "level=ERROR") {
				t.Errorf("errors in the logs:\n%s", logs)
			}
		}
	})
}

// secondInstance starts another service over a's database and clock, with
// its own singleflight and lock, as a second process would have: an
// in-process lock of its own, or a lock on the same Redis as a's.
func secondInstance(t *testing.T, a *app, cfg appConfig) *app {
	t.Helper()
	cfg.databaseURL = a.DatabaseURL
	return startInstance(t, cfg, a.Clock)
}

// TestInstancesSharingRedis is the scale-out set-up: three instances behind
// a load balancer share the database and a Redis lock. 300 parallel
// refreshes of one token spread over them all get 200 and one successor, and
// the token is rotated once: the instances that waited for the lock found it
// rotated and answered with the same successor.
func TestInstancesSharingRedis(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := redisConfig(t, defaultConfig())
		cfg.databaseURL = databaseURL
		instances := []*app{newApp(t, cfg)}
		for range 2 {
			instances = append(instances, secondInstance(t, instances[0], cfg))
		}
		s := instances[0].register(t)

		var next atomic.Int64
		balanced := func(token string) (response, error) {
			return instances[next.Add(1)%3].refresh(token)
		}
		rs, errs := storm(300, balanced, s.RefreshToken)
		for _, err := range errs {
			t.Errorf("transport error: %v", err)
		}
		successors := map[string]int{}
		for _, r := range rs {
			successors[newToken(t, r)]++
		}
		if len(successors) != 1 {
			t.Errorf("%d distinct successors across three instances, want 1", len(successors))
		}
		var rotations float64
		for _, in := range instances {
			rotations += in.counter(t, "auth_refresh_total", "result", "rotated")
			if logs := in.Logs.String(); strings.Contains(strings.ToLower(logs), "record not found") || strings.Contains(logs, "level=ERROR") {
				t.Errorf("errors in an instance's logs:\n%s", logs)
			}
			if in.Locks.ActiveLockCount() != 0 {
				t.Errorf("an instance still holds %d locks", in.Locks.ActiveLockCount())
			}
		}
		if rotations != 1 {
			t.Errorf("rotations across the instances = %v, want 1", rotations)
		}
		if rows := instances[0].familyRows(t, s.RefreshToken); rows != 2 {
			t.Errorf("family rows = %d, want 2", rows)
		}
		// /health reports Redis next to the database.
		r, err := instances[1].do(http.MethodGet, "/health", "", nil)
		const up = `{"status":"ok","info":{"database":{"status":"up"},"redis":{"status":"up"}},"error":{},"details":{"database":{"status":"up"},"redis":{"status":"up"}}}`
		if err != nil || string(r.Body) != up {
			t.Errorf("/health = %v %v, want %s", r, err, up)
		}
	})
}

// TestLogoutRacingRefreshes logs out while the same family is being
// refreshed as fast as a client can: once logout has answered, no token of
// the family may be left active, including a successor that a rotation
// committed while the logout ran.
func TestLogoutRacingRefreshes(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)
		for range 30 {
			s := a.register(t)
			start, loggedOut := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { // a client refreshing until it is refused or the logout is over
				<-start
				tok := s.RefreshToken
				for {
					r, err := a.refresh(tok)
					if err != nil || r.Status != http.StatusOK {
						return
					}
					if tok, err = tokenOf(r); err != nil {
						t.Error(err) // not Fatal: this is not the test's goroutine
						return
					}
					select {
					case <-loggedOut:
						return
					default:
					}
				}
			})
			wg.Go(func() {
				<-start
				defer close(loggedOut)
				if r, err := a.postJSON("/auth/logout", map[string]string{"refreshToken": s.RefreshToken}); err != nil || r.Status != http.StatusNoContent {
					t.Errorf("logout = %v %v", r, err)
				}
			})
			close(start)
			wg.Wait()
			if n := a.activeInFamily(t, s.RefreshToken); n != 0 {
				t.Fatalf("%d tokens of the family are still active after logout", n)
			}
		}
	})
}

// TestClockSkew: two instances on one PostgreSQL database whose own clocks
// are an hour apart, far more than the reuse window. Judged by the
// database's clock, as the service does, a storm split over both gets one
// successor, and a retry on the other instance gets it again. Judged by each
// instance's own clock, the same skew makes concurrent callers and retries
// look like reuse and logs the user out: the control shows what the
// database clock prevents.
func TestClockSkew(t *testing.T) {
	// run returns the answers that were not 200 and the distinct successors
	// the storm handed out.
	run := func(t *testing.T, dbClock bool) (failed []response, successors int) {
		cfg := defaultConfig()
		cfg.databaseURL = postgresSchema(t)
		cfg.dbClock = dbClock
		behind := cfg
		behind.clockSkew = -time.Hour
		a := newApp(t, cfg)
		b := secondInstance(t, a, behind)
		s := a.register(t)

		var next atomic.Int64
		both := func(token string) (response, error) {
			if next.Add(1)%2 == 0 {
				return a.refresh(token)
			}
			return b.refresh(token)
		}
		rs, errs := storm(200, both, s.RefreshToken)
		for _, err := range errs {
			t.Errorf("transport error: %v", err)
		}
		seen := map[string]bool{}
		var successor string
		for _, r := range rs {
			if r.Status != http.StatusOK {
				failed = append(failed, r)
				continue
			}
			successor = newToken(t, r)
			seen[successor] = true
		}
		if successor == "" {
			return failed, 0
		}
		// Rotated by the instance whose clock is behind, retried on the other.
		for _, inst := range []*app{b, a} {
			r, err := inst.refresh(successor)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != http.StatusOK {
				failed = append(failed, r)
			}
		}
		return failed, len(seen)
	}

	t.Run("database clock", func(t *testing.T) {
		if failed, successors := run(t, true); len(failed) > 0 || successors != 1 {
			t.Errorf("%d answers not 200 (first: %v), %d successors; want none and 1", len(failed), failed, successors)
		}
	})
	t.Run("control: own clocks", func(t *testing.T) {
		if failed, _ := run(t, false); len(failed) == 0 {
			t.Error("every answer was 200 with clocks an hour apart: the control no longer shows the failure the database clock prevents")
		}
	})
}
