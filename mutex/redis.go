package mutex

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable is returned by Redis.WithLock when Redis cannot be asked for
// the lock: it did not answer, or it failed recently and the circuit breaker
// is open. fn does not run.
var ErrUnavailable = errors.New("mutex: lock service unavailable")

// ErrAbandoned is returned by Redis.WithLock when the key is held by a holder
// that stopped renewing its lease, a process that crashed for instance: the
// lock cannot be had until that lease runs out, however long it is. fn does
// not run. A caller whose work is safe without the lock (guarded by its own
// compare-and-swap) goes on without it.
var ErrAbandoned = errors.New("mutex: lock abandoned by its holder")

// ErrLeaseLost is joined to fn's error by Redis.WithLock when Redis showed
// that the holder's lease ended before fn returned: a renewal or the release
// found the key expired or held by another holder (a process paused past its
// lease, a Redis outage longer than it). fn ran to its end, uninterrupted,
// and another holder may have run meanwhile: fn's effects stand, guarded by
// the caller's own compare-and-swap. A caller branches on it to count or log
// the overlap, not to undo fn. When Redis cannot be reached to renew or
// release, WithLock cannot tell and does not report a loss.
var ErrLeaseLost = errors.New("mutex: lease lost while fn ran")

// Client is the part of a Redis client that Redis uses; *redis.Client,
// *redis.ClusterClient and *redis.Ring satisfy it.
type Client interface {
	redis.Scripter
	Ping(ctx context.Context) *redis.StatusCmd
}

// Scripts run atomically in Redis, so a holder only ever touches its own lock.
var (
	// acquireScript takes the key for ARGV[1] with a lease of ARGV[2] ms and
	// answers {1, 0}. It is idempotent: when the key already holds ARGV[1] (a
	// SET applied whose reply was lost, then retried) it renews the lease and
	// answers {1, 0} too, instead of waiting for its own lease to run out.
	// When another holder has the key it answers {0, the key's remaining
	// lease in ms}, which lets a waiter see whether that holder renews it.
	acquireScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then redis.call("PEXPIRE", KEYS[1], ARGV[2]) return {1, 0} end
if v then return {0, redis.call("PTTL", KEYS[1])} end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return {1, 0}`)
	extendScript  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// RedisOptions tune a Redis lock. Zero values take the defaults.
type RedisOptions struct {
	// Timeout bounds a wait for a lock whose holder is alive, as Memory's
	// does (0: only ctx). Past it, WithLock returns ErrLockTimeout.
	Timeout time.Duration
	// Lease is how long Redis keeps a lock whose holder stopped answering
	// (3s). While fn runs, the lease is renewed every third of it.
	Lease time.Duration
	// AbandonAfter is how long a waiter waits for a holder that is not seen
	// renewing its lease before it gives up with ErrAbandoned (half the
	// lease). It must exceed the renewal interval, a third of the lease.
	AbandonAfter time.Duration
	// Cooldown is how long the lock stops asking Redis after Redis failed
	// (1s); WithLock then returns ErrUnavailable at once. One request after
	// the cooldown asks again, and a success closes the breaker.
	Cooldown time.Duration
	// Prefix is put before every key in Redis ("authsvc:lock:").
	Prefix string
	// OnStateChange, if set, is called when Redis becomes unavailable (with
	// the error that showed it) and when it answers again (with nil). It is
	// called once per change, not per failed request, and must not block.
	OnStateChange func(err error)
}

// Redis is a keyed lock shared by every process that uses the same Redis:
// at most one holder per key across all of them while Redis answers and
// leases last. Within a process, waiters for a key line up in a Memory
// first, so each process has at most one contender per key in Redis; between
// processes, a waiter polls with a jittered backoff.
//
// The lock saves work; it cannot guarantee exclusion through every fault (a
// holder paused past its lease, a Redis restart), so callers keep their own
// compare-and-swap. It therefore fails fast rather than waits: a circuit
// breaker answers ErrUnavailable at once while Redis is down, and a waiter
// gives up with ErrAbandoned when the holder does not renew its lease.
//
// Make one with NewRedis; the zero value has no client and is not usable.
type Redis struct {
	client  Client
	local   *Memory
	opts    RedisOptions
	breaker *gobreaker.CircuitBreaker[any]
	down    atomic.Bool // Redis was last seen unavailable

	// renewals, when set by a test, replaces the renewal ticker: a lease is
	// renewed each time a value arrives on it.
	renewals <-chan time.Time
}

// NewRedis returns a lock on client configured by opts.
func NewRedis(client Client, opts RedisOptions) *Redis {
	if opts.Lease <= 0 {
		opts.Lease = 3 * time.Second
	}
	if opts.AbandonAfter <= 0 {
		opts.AbandonAfter = opts.Lease / 2
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "authsvc:lock:"
	}
	r := &Redis{client: client, local: NewMemory(MemoryOptions{Timeout: opts.Timeout}), opts: opts}
	r.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis-lock",
		MaxRequests: 1, // one probe while half-open; the others answer ErrUnavailable at once
		Timeout:     opts.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		// A caller that gave up says nothing about Redis.
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
	})
	return r
}

// call runs one Redis command through the circuit breaker.
func (r *Redis) call(fn func() (any, error)) (any, error) {
	v, err := r.breaker.Execute(fn)
	switch {
	case err == nil:
		if r.down.CompareAndSwap(true, false) && r.opts.OnStateChange != nil {
			r.opts.OnStateChange(nil)
		}
		return v, nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, err
	}
	if !r.down.Swap(true) && r.opts.OnStateChange != nil {
		r.opts.OnStateChange(err)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// WithLock runs fn while holding the lock for key in Redis. It returns
// without running fn when the lock cannot be had: ErrLockTimeout when a live
// holder keeps it past the timeout or ctx ends, ErrAbandoned when its holder
// stopped renewing it, ErrUnavailable when Redis does not answer. The lock is
// released when fn returns or panics (the panic propagates).
//
// fn's context reports Contended when fn had to wait for another holder.
// While fn runs its lease is renewed every third of it. A lease that ends
// anyway (renewals that fail, a pause longer than the lease) does not
// interrupt fn; when Redis shows it, WithLock returns fn's error joined with
// ErrLeaseLost. WithLock is safe for concurrent use.
func (r *Redis) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	deadline := time.Now().Add(r.opts.Timeout)
	return r.local.WithLock(ctx, key, func(ctx context.Context) (err error) {
		// The wait in line here took part of the budget; the rest bounds the wait in Redis.
		waitCtx := ctx
		if r.opts.Timeout > 0 {
			var cancel context.CancelFunc
			waitCtx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		rkey := r.opts.Prefix + key
		token, waited, err := r.acquire(waitCtx, rkey)
		if err != nil {
			return err
		}
		stop := r.keepAlive(ctx, rkey, token)
		defer func() {
			lost := stop()
			if !r.release(ctx, rkey, token) {
				lost = true
			}
			if lost {
				err = errors.Join(err, fmt.Errorf("%w: %q", ErrLeaseLost, key))
			}
		}()
		if waited && !Contended(ctx) {
			ctx = withContended(ctx)
		}
		return fn(ctx)
	})
}

// release deletes key in Redis if token still holds it. It reports false
// only when Redis answered that token no longer held the key; a Redis that
// does not answer leaves the key to its lease.
func (r *Redis) release(ctx context.Context, key, token string) (held bool) {
	// Released even when ctx is done: a fresh context, briefly.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	n, err := r.call(func() (any, error) {
		return releaseScript.Run(ctx, r.client, []string{key}, token).Int()
	})
	return err != nil || n.(int) == 1
}

// acquire takes the key in Redis and returns the token it holds it with, and
// whether it had to wait for another holder.
func (r *Redis) acquire(ctx context.Context, key string) (token string, waited bool, err error) {
	token = rand.Text() // one token for every attempt: a retried acquire recognises its own lock
	leaseMS := r.opts.Lease.Milliseconds()
	var (
		backoff = time.Millisecond
		// The holder is alive while its lease is seen renewed; it is
		// abandoned once AbandonAfter passes without a renewal.
		lastAlive = time.Now()
		lastTTL   = int64(-1)
	)
	for {
		res, err := r.call(func() (any, error) {
			return acquireScript.Run(ctx, r.client, []string{key}, token, leaseMS).Int64Slice()
		})
		switch {
		case ctx.Err() != nil:
			return "", waited, fmt.Errorf("%w: waited for %q: %w", ErrLockTimeout, key, ctx.Err())
		case err != nil:
			return "", waited, err
		}
		reply := res.([]int64)
		if len(reply) == 2 && reply[0] == 1 {
			return token, waited, nil
		}
		waited = true
		now := time.Now()
		if reply[1] > lastTTL {
			lastAlive = now // a renewal, or a new holder with a fresh lease
		}
		lastTTL = reply[1]
		if now.Sub(lastAlive) >= r.opts.AbandonAfter {
			return "", waited, fmt.Errorf("%w: %q not renewed for %v", ErrAbandoned, key, now.Sub(lastAlive).Round(time.Millisecond))
		}
		// Jitter keeps the waiters of several processes from polling in step.
		wait := backoff/2 + mathrand.N(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", waited, fmt.Errorf("%w: waited for %q: %w", ErrLockTimeout, key, ctx.Err())
		}
	}
}

// keepAlive renews the lease every third of it until stop is called or a
// renewal fails; a failed renewal ends the renewals and nothing else. stop
// reports whether a renewal found the key no longer held by token.
func (r *Redis) keepAlive(ctx context.Context, key, token string) (stop func() (lost bool)) {
	done := make(chan struct{})
	result := make(chan bool, 1)
	go func() {
		lost := false
		defer func() { result <- lost }()
		ticks := r.renewals
		if ticks == nil {
			tick := time.NewTicker(r.opts.Lease / 3)
			defer tick.Stop()
			ticks = tick.C
		}
		for {
			select {
			case <-done:
				return
			case <-ticks:
				n, err := r.call(func() (any, error) {
					return extendScript.Run(context.WithoutCancel(ctx), r.client, []string{key}, token, r.opts.Lease.Milliseconds()).Int()
				})
				if err != nil {
					return // Redis does not answer: the lease may still hold, or not
				}
				if n.(int) == 0 {
					lost = true
					return
				}
			}
		}
	}()
	return func() bool {
		close(done)
		return <-result
	}
}

// ActiveLockCount reports how many keys this process holds or is acquiring
// in Redis.
func (r *Redis) ActiveLockCount() int { return r.local.ActiveLockCount() }

// IsLocked reports whether this process holds key or is acquiring it.
func (r *Redis) IsLocked(key string) bool { return r.local.IsLocked(key) }

// Ping checks that Redis answers. While the circuit breaker is open it
// returns ErrUnavailable without asking.
func (r *Redis) Ping(ctx context.Context) error {
	_, err := r.call(func() (any, error) { return nil, r.client.Ping(ctx).Err() })
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
