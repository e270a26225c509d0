package auth

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// ErrBusy: too many password hashes are running and waiting; the request
// was turned away without one, and may be retried shortly.
var ErrBusy = errors.New("auth: too many password checks in progress")

// PasswordHasher hashes passwords and checks them against a hash. The
// default is bcrypt at Config.BcryptCost.
type PasswordHasher interface {
	Hash(password []byte) ([]byte, error)
	Compare(hash, password []byte) error
}

// HashingConfig bounds the password hashing of a Service: every bcrypt of a
// registration or a login runs through one queue, so that a flood of them
// takes at most Concurrency cores and cannot starve refreshes, which need
// none. Zero values take the defaults.
type HashingConfig struct {
	// Concurrency is how many hashes run at once (GOMAXPROCS).
	Concurrency int
	// Queue is how many more may wait for a turn (256 × Concurrency); a
	// request that finds the queue full is turned away at once. Waiting
	// costs no CPU: this bound is for memory; Wait bounds the latency.
	Queue int
	// Wait is how long one may wait for a turn (5s) before it is turned
	// away: time for a burst of logins (some 70 per core at bcrypt's
	// default cost) to be served rather than refused.
	Wait time.Duration
}

// bcryptHasher is the default PasswordHasher.
type bcryptHasher struct{ cost int }

func (b bcryptHasher) Hash(password []byte) ([]byte, error) {
	return bcrypt.GenerateFromPassword(password, b.cost)
}

func (b bcryptHasher) Compare(hash, password []byte) error {
	return bcrypt.CompareHashAndPassword(hash, password)
}

// hashQueue runs password hashes, Concurrency at a time, first come first
// served, with a bounded line of waiters.
type hashQueue struct {
	hasher  PasswordHasher
	slots   chan struct{}
	queue   int64
	waiting atomic.Int64
	wait    time.Duration
	metrics *Metrics
}

func newHashQueue(h PasswordHasher, cfg HashingConfig, m *Metrics) *hashQueue {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.GOMAXPROCS(0)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256 * cfg.Concurrency
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 5 * time.Second
	}
	return &hashQueue{hasher: h, slots: make(chan struct{}, cfg.Concurrency), queue: int64(cfg.Queue), wait: cfg.Wait, metrics: m}
}

// hash hashes password in its turn.
func (q *hashQueue) hash(ctx context.Context, password []byte) (hash []byte, err error) {
	err = q.run(ctx, func() error {
		hash, err = q.hasher.Hash(password)
		return err
	})
	return hash, err
}

// compare checks password against hash in its turn. A nil error is a match.
// The result of a turn not had is ErrBusy or ctx's error, never a mismatch.
func (q *hashQueue) compare(ctx context.Context, hash, password []byte) (match bool, err error) {
	err = q.run(ctx, func() error {
		match = q.hasher.Compare(hash, password) == nil
		return nil
	})
	return match, err
}

// run runs fn once a slot is free: at once when one is, else after waiting
// in line, if the line is not full, at most q.wait. Channel senders are
// woken in the order they came, so the line is first come first served.
func (q *hashQueue) run(ctx context.Context, fn func() error) error {
	select {
	case q.slots <- struct{}{}:
	default:
		if err := q.await(ctx); err != nil {
			return err
		}
	}
	q.metrics.hashing(1)
	defer func() {
		q.metrics.hashing(-1)
		<-q.slots
	}()
	return fn()
}

func (q *hashQueue) await(ctx context.Context) error {
	if q.waiting.Add(1) > q.queue {
		q.waiting.Add(-1)
		q.metrics.busy("queue_full")
		return ErrBusy
	}
	q.metrics.waiting(1)
	defer func() {
		q.waiting.Add(-1)
		q.metrics.waiting(-1)
	}()
	timer := time.NewTimer(q.wait)
	defer timer.Stop()
	select {
	case q.slots <- struct{}{}:
		return nil
	case <-timer.C:
		q.metrics.busy("wait_timeout")
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hashMetrics are the collectors of the hash queue.
type hashMetrics struct {
	running, waiting prometheus.Gauge
	rejected         *prometheus.CounterVec
}

func newHashMetrics(reg prometheus.Registerer) hashMetrics {
	m := hashMetrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auth_password_hashes_running",
			Help: "Password hashes (bcrypt of a registration or a login) running now.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auth_password_hashes_waiting",
			Help: "Registrations and logins waiting for a turn to hash a password.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_password_hash_rejected_total",
			Help: "Registrations and logins answered 503 without a hash, by reason: queue_full, wait_timeout.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.running, m.waiting, m.rejected)
	return m
}

func (m *Metrics) hashing(delta float64) {
	if m != nil {
		m.hash.running.Add(delta)
	}
}

func (m *Metrics) waiting(delta float64) {
	if m != nil {
		m.hash.waiting.Add(delta)
	}
}

func (m *Metrics) busy(reason string) {
	if m != nil {
		m.hash.rejected.WithLabelValues(reason).Inc()
	}
}
