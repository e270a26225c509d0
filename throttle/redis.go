package throttle

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// RedisOptions configure a Redis limiter. The zero value is usable.
type RedisOptions struct {
	// Prefix starts every key in Redis ("authsvc:throttle:" when empty), after
	// the "rate:" of redis_rate.
	Prefix string
	// Timeout bounds one decision in Redis (250ms when zero); past it the
	// local limiter decides.
	Timeout time.Duration
	// Cooldown is how long the local limiter decides alone after Redis
	// failed, before one request asks Redis again (1s when zero).
	Cooldown time.Duration
	// Local is the limiter used while Redis does not answer (a fresh
	// Memory when nil).
	Local *Memory
	// OnStateChange, when set, is called with the error when Redis stops
	// answering, and with nil when it answers again.
	OnStateChange func(err error)
	// OnFallback, when set, is called for each decision made locally because
	// Redis did not answer.
	OnFallback func()
}

// Redis is a Limiter whose counts live in Redis, so that every instance
// sharing the Redis shares the limit. It runs github.com/go-redis/redis_rate's
// GCRA script, on Redis's clock.
//
// A Redis outage never refuses a request: a failed or slow call is decided
// by the local limiter, and a circuit breaker keeps the next requests from
// paying Redis's timeout, for Cooldown, before one of them tries again.
// During an outage each instance counts alone. It is safe for concurrent use.
type Redis struct {
	limiter *redis_rate.Limiter
	opts    RedisOptions
	breaker *gobreaker.CircuitBreaker[*redis_rate.Result]
	down    atomic.Bool
}

// NewRedis returns a limiter over client.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "authsvc:throttle:"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 250 * time.Millisecond
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = time.Second
	}
	if opts.Local == nil {
		opts.Local = NewMemory(MemoryOptions{})
	}
	r := &Redis{limiter: redis_rate.NewLimiter(client), opts: opts}
	r.breaker = gobreaker.NewCircuitBreaker[*redis_rate.Result](gobreaker.Settings{
		Name:        "redis-throttle",
		MaxRequests: 1, // one probe while half-open; the others decide locally at once
		Timeout:     opts.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		// A client that left says nothing about Redis.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	return r
}

// Allow counts one request of key at rate r in Redis or, when Redis does not
// answer, in the local limiter.
func (r *Redis) Allow(ctx context.Context, key string, rate Rate) Result {
	if !rate.Valid() {
		return Result{Allowed: true, Limit: rate.Limit}
	}
	res, err := r.breaker.Execute(func() (*redis_rate.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
		return r.limiter.Allow(ctx, r.opts.Prefix+key, redis_rate.Limit{Rate: rate.Limit, Burst: rate.Limit, Period: rate.Period})
	})
	if err != nil {
		refused := errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
		if !refused && ctx.Err() == nil && !r.down.Swap(true) && r.opts.OnStateChange != nil {
			r.opts.OnStateChange(err)
		}
		if r.opts.OnFallback != nil {
			r.opts.OnFallback()
		}
		return r.opts.Local.Allow(ctx, key, rate)
	}
	if r.down.CompareAndSwap(true, false) && r.opts.OnStateChange != nil {
		r.opts.OnStateChange(nil)
	}
	out := Result{Allowed: res.Allowed > 0, Limit: rate.Limit, Remaining: res.Remaining, ResetAfter: max(res.ResetAfter, 0)}
	if !out.Allowed {
		out.RetryAfter = max(res.RetryAfter, 0)
	}
	return out
}
