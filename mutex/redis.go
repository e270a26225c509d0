package mutex

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned by Redis.WithLock when Redis cannot be asked for
// the lock; fn does not run.
var ErrUnavailable = errors.New("mutex: lock service unavailable")

// Client is the part of a Redis client that Redis uses; *redis.Client,
// *redis.ClusterClient and *redis.Ring satisfy it.
type Client interface {
	redis.Scripter
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
	Ping(ctx context.Context) *redis.StatusCmd
}

// Scripts run atomically in Redis: a holder extends or releases the lock only
// while the key still holds its own token, never another holder's.
var (
	extendScript  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// RedisOptions tune a Redis lock. Zero values take the defaults.
type RedisOptions struct {
	// Timeout bounds a wait for the lock, as Memory's does (0: only ctx).
	Timeout time.Duration
	// Lease is how long Redis keeps a lock whose holder stopped answering,
	// a crashed process for instance (10s). While fn runs, the lease is
	// renewed every third of it.
	Lease time.Duration
	// Prefix is put before every key in Redis ("authsvc:lock:").
	Prefix string
}

// Redis is a keyed lock shared by every process that uses the same Redis:
// at most one holder per key across all of them. Within a process, waiters
// for a key line up in a Memory first, so each process has at most one
// contender per key in Redis; between processes, a waiter polls with a
// jittered backoff. A holder that dies loses the lock when its lease runs out.
type Redis struct {
	client Client
	local  *Memory
	lease  time.Duration
	prefix string
}

// NewRedis returns a lock on client.
func NewRedis(client Client, opts RedisOptions) *Redis {
	if opts.Lease <= 0 {
		opts.Lease = 10 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "authsvc:lock:"
	}
	return &Redis{client: client, local: NewMemory(opts.Timeout), lease: opts.Lease, prefix: opts.Prefix}
}

// WithLock runs fn while holding the lock for key in Redis, waiting until the
// lock is free, the timeout passes or ctx is done (an error matching
// ErrLockTimeout; fn does not run). An error matching ErrUnavailable means
// Redis did not answer. The lock is released when fn returns or panics (the
// panic propagates). Should the lease be lost while fn runs, which only a
// Redis outage longer than the lease can cause, the context fn receives is
// cancelled. WithLock is safe for concurrent use.
func (r *Redis) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	deadline := time.Now().Add(r.local.timeout)
	return r.local.WithLock(ctx, key, func(ctx context.Context) error {
		// The wait in line here took part of the budget; the rest bounds the wait in Redis.
		waitCtx := ctx
		if r.local.timeout > 0 {
			var cancel context.CancelFunc
			waitCtx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		token, err := r.acquire(waitCtx, r.prefix+key)
		if err != nil {
			return err
		}
		held, stop := r.keepAlive(ctx, r.prefix+key, token)
		defer func() {
			stop()
			// Released even when ctx is done: a fresh context, briefly.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = releaseScript.Run(rctx, r.client, []string{r.prefix + key}, token).Err()
		}()
		return fn(held)
	})
}

// acquire takes the key in Redis and returns the token it holds it with.
func (r *Redis) acquire(ctx context.Context, key string) (string, error) {
	token := rand.Text()
	backoff := time.Millisecond
	for {
		ok, err := r.client.SetNX(ctx, key, token, r.lease).Result()
		switch {
		case ok:
			return token, nil
		case ctx.Err() != nil:
			return "", fmt.Errorf("%w: waited for %q: %w", ErrLockTimeout, key, ctx.Err())
		case err != nil:
			return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		// Jitter keeps the waiters of several processes from polling in step.
		wait := backoff/2 + mathrand.N(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("%w: waited for %q: %w", ErrLockTimeout, key, ctx.Err())
		}
	}
}

// keepAlive renews the lease while fn runs. The returned context is ctx,
// cancelled if the lease cannot be renewed; stop ends the renewals.
func (r *Redis) keepAlive(ctx context.Context, key, token string) (context.Context, func()) {
	held, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(r.lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				n, err := extendScript.Run(context.WithoutCancel(ctx), r.client, []string{key}, token, r.lease.Milliseconds()).Int()
				if err != nil || n == 0 {
					cancel(fmt.Errorf("mutex: lease on %q lost", key))
					return
				}
			}
		}
	}()
	return held, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

// ActiveLockCount reports how many keys this process holds or is acquiring
// in Redis.
func (r *Redis) ActiveLockCount() int { return r.local.ActiveLockCount() }

// IsLocked reports whether this process holds key or is acquiring it.
func (r *Redis) IsLocked(key string) bool { return r.local.IsLocked(key) }

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
