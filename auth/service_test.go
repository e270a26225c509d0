package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

func newDB(t testing.TB) *models.DB {
	t.Helper()
	db, err := models.Open(t.Context(), filepath.Join(t.TempDir(), "auth.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newService(t testing.TB, store auth.Store, locks auth.Locker) *auth.Service {
	t.Helper()
	s, err := auth.NewService(store, locks, auth.Config{
		Secret: []byte("secret"), ReuseWindow: 10 * time.Second, BcryptCost: bcrypt.MinCost,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gatedLocker holds every WithLock until open is closed, so that a test can
// keep a refresh in flight.
type gatedLocker struct {
	inner   *mutex.Memory
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gatedLocker) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	return g.inner.WithLock(ctx, key, func(ctx context.Context) error {
		g.once.Do(func() { close(g.entered) })
		<-g.open
		return fn(ctx)
	})
}

// countingStore counts reads of a token and rotations.
type countingStore struct {
	*models.DB
	mu        sync.Mutex
	reads     int
	rotations int
}

func (c *countingStore) TokenByHash(ctx context.Context, hash []byte) (models.TokenState, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.DB.TokenByHash(ctx, hash)
}

func (c *countingStore) Rotate(ctx context.Context, id int64, now time.Time, sealed []byte, next *models.RefreshToken) error {
	c.mu.Lock()
	c.rotations++
	c.mu.Unlock()
	return c.DB.Rotate(ctx, id, now, sealed, next)
}

// counter returns the value of the counter name{label="value"} in reg (0
// when it was never counted).
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRefreshOutlivesFirstCaller: the caller that started the shared refresh
// gives up; the 100 others that joined its flight still get the new pair,
// from that one flight: one read of the token, one rotation.
func TestRefreshOutlivesFirstCaller(t *testing.T) {
	store := &countingStore{DB: newDB(t)}
	locks := &gatedLocker{inner: mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Minute}), entered: make(chan struct{}), open: make(chan struct{})}
	reg := prometheus.NewRegistry()
	svc, err := auth.NewService(store, locks, auth.Config{
		Secret: []byte("secret"), ReuseWindow: 10 * time.Second, BcryptCost: bcrypt.MinCost, Metrics: auth.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	const joiners = 100
	joined := make(chan struct{}, 1+joiners)
	auth.OnJoinFlight(svc, func() { joined <- struct{}{} })
	sess, err := svc.Register(t.Context(), "a@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}

	firstCtx, cancelFirst := context.WithCancel(t.Context())
	firstErr := make(chan error, 1)
	go func() {
		_, err := svc.Refresh(firstCtx, sess.RefreshToken)
		firstErr <- err
	}()
	<-joined
	<-locks.entered // the shared work holds the lock now, and waits for the gate

	results := make(chan auth.Tokens, joiners)
	errs := make(chan error, joiners)
	var wg sync.WaitGroup
	for range joiners {
		wg.Go(func() {
			tok, err := svc.Refresh(t.Context(), sess.RefreshToken)
			if err != nil {
				errs <- err
				return
			}
			results <- tok
		})
	}
	for range joiners {
		<-joined // every joiner is a member of the gated flight before it ends
	}
	cancelFirst()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller = %v, want context.Canceled", err)
	}
	close(locks.open)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Errorf("a joined caller failed: %v", err)
	}
	distinct := map[string]bool{}
	for tok := range results {
		distinct[tok.RefreshToken] = true
	}
	if len(distinct) != 1 {
		t.Errorf("%d distinct successors, want 1", len(distinct))
	}
	if store.reads != 1 || store.rotations != 1 {
		t.Errorf("the token was read %d times and rotated %d times, want once each: one flight for all", store.reads, store.rotations)
	}
	shared := counter(t, reg, "auth_refresh_callers_total", "shared", "true")
	alone := counter(t, reg, "auth_refresh_callers_total", "shared", "false")
	if shared != joiners || alone != 0 {
		t.Errorf("callers answered from a shared flight: %v, alone: %v; want %d, 0", shared, alone, joiners)
	}
}

// leaseLosingLocker runs fn under an in-process lock, then reports what
// mutex.Redis reports when Redis showed the lease ended while fn ran: fn's
// error joined with mutex.ErrLeaseLost.
type leaseLosingLocker struct{ mutex.Memory }

func (l *leaseLosingLocker) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	err := l.Memory.WithLock(ctx, key, fn)
	return errors.Join(err, fmt.Errorf("%w: test", mutex.ErrLeaseLost))
}

// A rotation whose lease was lost while it ran still answers with its new
// pair: the compare-and-swap kept it right. The loss is counted.
func TestRefreshLeaseLost(t *testing.T) {
	db := newDB(t)
	reg := prometheus.NewRegistry()
	svc, err := auth.NewService(db, new(leaseLosingLocker), auth.Config{
		Secret: []byte("secret"), ReuseWindow: 10 * time.Second, BcryptCost: bcrypt.MinCost, Metrics: auth.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := svc.Register(t.Context(), "lease@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := svc.Refresh(t.Context(), sess.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh with the lease lost = %v, want the new pair", err)
	}
	// The successor is the live token now: the rotation committed.
	again, err := newService(t, db, new(mutex.Memory)).Refresh(t.Context(), next.RefreshToken)
	if err != nil || again.RefreshToken == next.RefreshToken {
		t.Errorf("Refresh of the successor = %v, want a new pair", err)
	}
	if n := counter(t, reg, "auth_refresh_lock_total", "outcome", "lease_lost"); n != 1 {
		t.Errorf("lease_lost counted %v times, want 1", n)
	}
}

// conflictStore loses the compare-and-swap once, as when another instance
// rotates the token between our read and our write.
type conflictStore struct {
	*models.DB
	svc   *auth.Service
	raced bool
	won   string
}

func (c *conflictStore) Rotate(ctx context.Context, id int64, now time.Time, sealed []byte, next *models.RefreshToken) error {
	if !c.raced {
		c.raced = true
		// The other instance gets there first, with its own service and lock.
		tok, err := c.svc.Refresh(ctx, c.won)
		if err != nil {
			return err
		}
		c.won = tok.RefreshToken
	}
	return c.DB.Rotate(ctx, id, now, sealed, next)
}

func TestRefreshLosesCompareAndSwap(t *testing.T) {
	db := newDB(t)
	other := newService(t, db, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
	store := &conflictStore{DB: db, svc: other}
	svc := newService(t, store, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
	sess, err := svc.Register(t.Context(), "b@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}
	store.won = sess.RefreshToken
	got, err := svc.Refresh(t.Context(), sess.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh after losing the compare-and-swap = %v, want the winner's successor", err)
	}
	if got.RefreshToken != store.won {
		t.Errorf("Refresh = %q, want the other instance's successor %q", got.RefreshToken, store.won)
	}
}

func TestRegisterAndLogin(t *testing.T) {
	svc := newService(t, newDB(t), mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
	ctx := t.Context()
	name := "Ann"
	sess, err := svc.Register(ctx, "Ann@Example.COM", "password123", &name)
	if err != nil {
		t.Fatal(err)
	}
	if sess.User.Email != "ann@example.com" || sess.User.PasswordHash == "password123" {
		t.Errorf("user = %+v: want a lower-cased email and a hashed password", sess.User)
	}
	if _, err := svc.Register(ctx, "ANN@example.com", "password456", nil); !errors.Is(err, auth.ErrEmailTaken) {
		t.Errorf("Register(same email, other case) = %v, want ErrEmailTaken", err)
	}
	if _, err := svc.Login(ctx, "ann@EXAMPLE.com", "password123"); err != nil {
		t.Errorf("Login(any case) = %v", err)
	}
	for _, tc := range []struct{ email, password string }{
		{"ann@example.com", "wrong-password"},
		{"nobody@example.com", "password123"},
	} {
		if _, err := svc.Login(ctx, tc.email, tc.password); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Login(%q, %q) = %v, want ErrInvalidCredentials", tc.email, tc.password, err)
		}
	}
	u, err := svc.Authenticate(ctx, sess.AccessToken)
	if err != nil || u.ID != sess.User.ID {
		t.Errorf("Authenticate = %+v, %v; want the user", u, err)
	}
}

func TestNewServiceNeedsSecret(t *testing.T) {
	if _, err := auth.NewService(nil, nil, auth.Config{}); err == nil {
		t.Error("NewService without a secret = nil error")
	}
}

// TestAuthenticateClaimTypes checks the claims as jsonwebtoken.verify does:
// exp and nbf must be numbers, iat is not looked at.
func TestAuthenticateClaimTypes(t *testing.T) {
	svc := newService(t, newDB(t), mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
	sess, err := svc.Register(t.Context(), "claims@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		ok     bool
	}{
		{"numbers", jwt.MapClaims{"iat": now, "exp": now + 60}, true},
		{"no exp", jwt.MapClaims{"iat": now}, true},
		{"iat a string", jwt.MapClaims{"iat": "yesterday", "exp": now + 60}, true},
		{"exp a numeric string", jwt.MapClaims{"exp": strconv.FormatInt(now+60, 10)}, false},
		{"nbf a numeric string", jwt.MapClaims{"nbf": strconv.FormatInt(now-60, 10)}, false},
		{"exp null", jwt.MapClaims{"exp": nil}, false},
		{"expired", jwt.MapClaims{"exp": now - 1}, false},
		{"nbf ahead", jwt.MapClaims{"nbf": now + 60}, false},
		{"sub a number", jwt.MapClaims{"sub": 42}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := jwt.MapClaims{"sub": sess.User.ID, "email": sess.User.Email}
			for k, v := range tc.claims {
				claims[k] = v
			}
			token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = svc.Authenticate(t.Context(), token)
			if tc.ok && err != nil {
				t.Errorf("Authenticate = %v, want the user", err)
			}
			if !tc.ok && !errors.Is(err, auth.ErrUnauthorized) {
				t.Errorf("Authenticate = %v, want ErrUnauthorized", err)
			}
		})
	}
}

// panickyStore panics where the refresh reads the token.
type panickyStore struct{ *models.DB }

func (panickyStore) TokenByHash(context.Context, []byte) (models.TokenState, error) {
	panic("bug in the store")
}

// TestRefreshPanicIsAnError: a panic inside the shared refresh becomes an
// error for every caller, the lock is released, and the process lives on
// (singleflight would otherwise re-panic where nothing can recover).
func TestRefreshPanicIsAnError(t *testing.T) {
	locks := mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second})
	svc := newService(t, panickyStore{newDB(t)}, locks)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := svc.Refresh(t.Context(), "some-token"); err == nil || !strings.Contains(err.Error(), "panic") {
				t.Errorf("Refresh = %v, want an error naming the panic", err)
			}
		})
	}
	wg.Wait()
	if n := locks.ActiveLockCount(); n != 0 {
		t.Errorf("ActiveLockCount after the panics = %d, want 0", n)
	}
}

// denyingLocker stands for a lock that cannot be had: WithLock returns err
// without running fn, and counts the calls.
type denyingLocker struct {
	err   error
	calls atomic.Int32
}

func (d *denyingLocker) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	d.calls.Add(1)
	return d.err
}

// A token that is not live is answered from the database alone: a replay
// within the window, a reuse, an unknown token never ask for the lock.
func TestRefreshSettledTokensTakeNoLock(t *testing.T) {
	db := newDB(t)
	svc := newService(t, db, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
	sess, err := svc.Register(t.Context(), "settled@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := svc.Refresh(t.Context(), sess.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// A second instance on the same database whose lock is held forever.
	held := &denyingLocker{err: fmt.Errorf("%w: held", mutex.ErrLockTimeout)}
	other := newService(t, db, held)
	if got, err := other.Refresh(t.Context(), sess.RefreshToken); err != nil || got.RefreshToken != next.RefreshToken {
		t.Errorf("replay while the lock is held = %q, %v; want the successor %q", got.RefreshToken, err, next.RefreshToken)
	}
	if _, err := other.Refresh(t.Context(), "not-a-token"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("unknown token = %v, want ErrInvalidToken", err)
	}
	if n := held.calls.Load(); n != 0 {
		t.Errorf("settled tokens asked for the lock %d times, want 0", n)
	}
	// A live token does need the lock, and a live holder that keeps it is a timeout.
	if _, err := other.Refresh(t.Context(), next.RefreshToken); !errors.Is(err, mutex.ErrLockTimeout) {
		t.Errorf("live token with its lock held = %v, want ErrLockTimeout", err)
	}
}

// When the lock cannot be had because Redis is down or its holder died, 200
// callers of one token on each of two instances still get one successor,
// from the compare-and-swap alone.
func TestRefreshWithoutTheLock(t *testing.T) {
	for _, cause := range []error{mutex.ErrUnavailable, mutex.ErrAbandoned} {
		t.Run(cause.Error(), func(t *testing.T) {
			store := &countingStore{DB: newDB(t)}
			locks := &denyingLocker{err: fmt.Errorf("%w: test", cause)}
			instances := []*auth.Service{newService(t, store, locks), newService(t, store, locks)}
			sess, err := instances[0].Register(t.Context(), "nolock@example.com", "password123", nil)
			if err != nil {
				t.Fatal(err)
			}
			const callers = 400
			start := make(chan struct{})
			got := make(chan string, callers)
			errs := make(chan error, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					<-start
					tok, err := instances[i%2].Refresh(t.Context(), sess.RefreshToken)
					if err != nil {
						errs <- err
						return
					}
					got <- tok.RefreshToken
				})
			}
			close(start)
			wg.Wait()
			close(got)
			close(errs)
			for err := range errs {
				t.Errorf("Refresh without the lock = %v", err)
			}
			successors := map[string]int{}
			for tok := range got {
				successors[tok]++
			}
			if len(successors) != 1 {
				t.Errorf("%d distinct successors, want 1", len(successors))
			}
			if locks.calls.Load() == 0 {
				t.Error("the lock was never asked for")
			}
		})
	}
}

// Rotating the signing secret logs nobody out: tokens signed under
// PreviousSecret still verify, new ones are signed under Secret alone, and
// any other secret is refused.
func TestPreviousSecret(t *testing.T) {
	db := newDB(t)
	cost := bcrypt.MinCost
	service := func(secret, previous string) *auth.Service {
		s, err := auth.NewService(db, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}), auth.Config{Secret: []byte(secret), PreviousSecret: []byte(previous), BcryptCost: cost, ReuseWindow: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := service("the old secret, at least 32 bytes", "")
	rotated := service("the new secret, at least 32 bytes", "the old secret, at least 32 bytes")
	stranger := service("somebody else's secret, 32 bytes", "")

	sess, err := old.Register(t.Context(), "rotate@example.com", "password123", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.Authenticate(t.Context(), sess.AccessToken); err != nil {
		t.Errorf("a token signed under the previous secret = %v, want accepted", err)
	}
	// A refresh sealed before the rotation still replays after it.
	next, err := old.Refresh(t.Context(), sess.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Refresh(t.Context(), sess.RefreshToken); err != nil || got.RefreshToken != next.RefreshToken {
		t.Errorf("replay across the secret rotation = %q, %v; want %q", got.RefreshToken, err, next.RefreshToken)
	}
	fresh, err := rotated.Login(t.Context(), "rotate@example.com", "password123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Authenticate(t.Context(), fresh.AccessToken); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("a new token under the old secret = %v, want ErrUnauthorized: new tokens are signed with the new secret", err)
	}
	if _, err := stranger.Authenticate(t.Context(), sess.AccessToken); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("another secret = %v, want ErrUnauthorized", err)
	}
}

// logoutStore runs a logout of the token's family at the worst moment: right
// after the refresh read the token, before it acts on what it read.
type logoutStore struct {
	*models.DB
	svc    *auth.Service
	logout string // the token whose family to log out; empty once done
}

func (l *logoutStore) TokenByHash(ctx context.Context, hash []byte) (models.TokenState, error) {
	st, err := l.DB.TokenByHash(ctx, hash)
	if l.logout != "" {
		tok := l.logout
		l.logout = ""
		if err := l.svc.Logout(ctx, tok); err != nil {
			return st, err
		}
	}
	return st, err
}

// A refresh that read the family just before a concurrent logout committed
// hands out no pair: neither a replay within the window nor a rotation.
func TestRefreshRacingLogout(t *testing.T) {
	for _, replay := range []bool{false, true} {
		t.Run(map[bool]string{false: "rotation", true: "replay"}[replay], func(t *testing.T) {
			db := newDB(t)
			plain := newService(t, db, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
			store := &logoutStore{DB: db, svc: plain}
			svc := newService(t, store, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Second}))
			sess, err := plain.Register(t.Context(), "race@example.com", "password123", nil)
			if err != nil {
				t.Fatal(err)
			}
			presented := sess.RefreshToken
			if replay {
				if _, err := plain.Refresh(t.Context(), presented); err != nil {
					t.Fatal(err)
				}
			}
			store.logout = presented
			got, err := svc.Refresh(t.Context(), presented)
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Refresh racing a logout = %+v, %v; want ErrInvalidToken", got, err)
			}
		})
	}
}
