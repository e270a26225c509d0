package tests

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokenrelay/authsvc/auth"
)

// gateHasher is bcrypt whose password checks (logins) wait at a gate until
// the test opens it, and which records how many ran at once.
type gateHasher struct {
	entered chan struct{} // a check arrived at the gate
	open    chan struct{} // closed: checks go on
	running atomic.Int64
	peak    atomic.Int64
}

func newGateHasher() *gateHasher {
	return &gateHasher{entered: make(chan struct{}, 1000), open: make(chan struct{})}
}

func (g *gateHasher) Hash(password []byte) ([]byte, error) {
	return bcrypt.GenerateFromPassword(password, bcrypt.MinCost)
}

func (g *gateHasher) Compare(hash, password []byte) error {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	g.entered <- struct{}{}
	<-g.open
	return bcrypt.CompareHashAndPassword(hash, password)
}

// gauge reads a gauge of the app's registry.
func (a *app) gauge(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := a.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// TestHashQueueKeepsRefreshesGoing floods the service with logins while
// their password checks cannot finish: 2 check at once, 4 wait their turn,
// and the other 194 are answered 503 with Retry-After at once, without a
// bcrypt. Meanwhile refreshes answer 200: they never wait for a hash. Once
// the checks go on, the 6 logins in flight finish.
func TestHashQueueKeepsRefreshesGoing(t *testing.T) {
	gate := newGateHasher()
	cfg := defaultConfig()
	cfg.hasher = gate
	cfg.hashing = auth.HashingConfig{Concurrency: 2, Queue: 4, Wait: time.Minute}
	a := newApp(t, cfg)
	s := a.register(t)
	email := s.User["email"].(string)

	const logins = 200
	results := make(chan response, logins)
	errs := make(chan error, logins)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range logins {
		wg.Go(func() {
			<-start
			password := "wrong"
			if i%2 == 0 {
				password = "password123"
			}
			r, err := a.login(email, password, "")
			if err != nil {
				errs <- err
				return
			}
			results <- r
		})
	}
	close(start)
	t.Cleanup(func() {
		select {
		case <-gate.open:
		default:
			close(gate.open) // let the logins go should the test stop early
		}
		wg.Wait()
	})

	// The turned away answer at once; the 6 in line do not answer yet.
	for range logins - 6 {
		select {
		case err := <-errs:
			t.Fatal(err)
		case r := <-results:
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "1" ||
				string(r.Body) != `{"message":"Too many logins in progress, retry shortly","error":"Service Unavailable","statusCode":503}` {
				t.Fatalf("a login past the queue = %s (Retry-After %q), want 503 with Retry-After 1", r, r.Header.Get("Retry-After"))
			}
		}
	}
	for range 2 {
		<-gate.entered
	}
	if run, wait := a.gauge(t, "auth_password_hashes_running"), a.gauge(t, "auth_password_hashes_waiting"); run != 2 || wait != 4 {
		t.Errorf("hashes running %v, waiting %v; want 2 and 4", run, wait)
	}

	// 200 concurrent refreshes and a chain of 20, all while 6 logins are in flight.
	token := s.RefreshToken
	refreshes := make(chan response, 200)
	var rg sync.WaitGroup
	for range 200 {
		rg.Go(func() {
			r, err := a.refresh(token)
			if err != nil {
				errs <- err
				return
			}
			refreshes <- r
		})
	}
	rg.Wait()
	close(refreshes)
	for r := range refreshes {
		token = newToken(t, r)
	}
	for range 20 {
		token = newToken(t, a.mustRefresh(t, token))
	}
	select {
	case r := <-results:
		t.Fatalf("a login in line answered before the checks went on: %s", r)
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if n := a.counter(t, "auth_password_hash_rejected_total", "reason", "queue_full"); n != logins-6 {
		t.Errorf("auth_password_hash_rejected_total{reason=queue_full} = %v, want %d", n, logins-6)
	}

	close(gate.open)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for r := range results {
		if r.Status != http.StatusOK && r.Status != http.StatusUnauthorized {
			t.Errorf("a login in line = %s, want 200 or 401", r)
		}
	}
	if p := gate.peak.Load(); p != 2 {
		t.Errorf("%d password checks ran at once, want 2", p)
	}
}

// TestHashQueueWaitIsBounded: a login that waits for a turn past the
// queue's wait is turned away with 503, not left hanging.
func TestHashQueueWaitIsBounded(t *testing.T) {
	gate := newGateHasher()
	cfg := defaultConfig()
	cfg.hasher = gate
	cfg.hashing = auth.HashingConfig{Concurrency: 1, Queue: 10, Wait: 50 * time.Millisecond}
	a := newApp(t, cfg)
	first := make(chan response, 1)
	go func() {
		r, _ := a.login("a@example.com", "x", "")
		first <- r
	}()
	<-gate.entered // the only turn is taken, and held
	r, err := a.login("b@example.com", "x", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("a login whose turn does not come = %s, want 503 with Retry-After", r)
	}
	if n := a.counter(t, "auth_password_hash_rejected_total", "reason", "wait_timeout"); n != 1 {
		t.Errorf("auth_password_hash_rejected_total{reason=wait_timeout} = %v, want 1", n)
	}
	close(gate.open)
	if r := <-first; r.Status != http.StatusUnauthorized {
		t.Errorf("the login that had the turn = %s, want 401", r)
	}
}
