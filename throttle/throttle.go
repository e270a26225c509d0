// Package throttle limits how often one key (a client address, an account)
// may do something, with the generic cell rate algorithm (GCRA): a key may
// spend Limit requests at once, and gets them back at Limit per Period.
//
// Memory keeps the state in this process, in bounded memory; Redis keeps it
// in Redis, so that several instances share one limit, and falls back to a
// Memory of its own while Redis does not answer. Both run the same
// algorithm, so a fallback changes where the count lives, not what it allows.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is how many requests a key may make in a period: Limit at once, and
// Limit more each Period (one every Period/Limit).
type Rate struct {
	Limit  int
	Period time.Duration
}

// String formats r as ParseRate reads it.
func (r Rate) String() string { return strconv.Itoa(r.Limit) + "/" + r.Period.String() }

// Valid reports whether r can limit anything: a positive limit and period.
func (r Rate) Valid() bool { return r.Limit > 0 && r.Period > 0 }

// interval is the time one request takes to come back.
func (r Rate) interval() time.Duration { return max(r.Period/time.Duration(r.Limit), 1) }

// ErrBadRate is returned by ParseRate for a string it cannot read.
var ErrBadRate = errors.New("throttle: bad rate")

// ParseRate reads "LIMIT/PERIOD", e.g. "5/1m", with parseDuration reading
// the period.
func ParseRate(s string, parseDuration func(string) (time.Duration, error)) (Rate, error) {
	limit, period, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%w: %q: want LIMIT/PERIOD, e.g. 5/1m", ErrBadRate, s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(limit))
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("%w: %q: the limit must be a whole number of at least 1", ErrBadRate, s)
	}
	d, err := parseDuration(period)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("%w: %q: the period must be a positive duration", ErrBadRate, s)
	}
	return Rate{Limit: n, Period: d}, nil
}

// Result is the answer to one request.
type Result struct {
	Allowed   bool
	Limit     int // the rate's limit
	Remaining int // requests the key may still make at once, after this one
	// RetryAfter is, when the request is not allowed, how long until the
	// next one is; zero when it is allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key has its whole limit back.
	ResetAfter time.Duration
}

// Limiter decides whether a key may make one more request at rate r. It
// always answers: a store that fails is its own business.
type Limiter interface {
	Allow(ctx context.Context, key string, r Rate) Result
}

// gcra is one step of the generic cell rate algorithm at now, for a key
// whose theoretical arrival time is tat (zero for a key never seen). It
// returns the key's new tat and the result; it is the computation of
// github.com/go-redis/redis_rate's script, in nanoseconds.
func gcra(tat, now int64, r Rate) (int64, Result) {
	interval := int64(r.interval())
	burst := interval * int64(r.Limit)
	tat = max(tat, now)
	next := tat + interval
	diff := now - (next - burst)
	if diff < 0 {
		return tat, Result{Limit: r.Limit, RetryAfter: time.Duration(-diff), ResetAfter: time.Duration(tat - now)}
	}
	return next, Result{Allowed: true, Limit: r.Limit, Remaining: int(diff / interval), ResetAfter: time.Duration(next - now)}
}
