package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
)

// ErrUnavailable reports that the database kept failing with transient
// errors (lost connections, a server restarting, serialization failures)
// until the retry budget of the operation ran out. It wraps the last cause.
// An operation that failed so may still have been committed.
var ErrUnavailable = errors.New("models: database unavailable")

// retryPolicy bounds the retries of one store operation.
type retryPolicy struct {
	attempts int           // attempts in all, the first one included
	budget   time.Duration // retries end this long after the first failure, a retry in flight included
	base     time.Duration // the first backoff; it doubles with each retry
	maxDelay time.Duration // the longest backoff
}

// defaultRetryPolicy rides out a failover, a restart or a pooler reset that
// takes up to about two seconds; a database that stays away longer gets
// callers ErrUnavailable, and their clients a 503 to retry on.
func defaultRetryPolicy() retryPolicy {
	return retryPolicy{attempts: 12, budget: 2 * time.Second, base: 10 * time.Millisecond, maxDelay: 250 * time.Millisecond}
}

// backoff returns the pause before retry n (1, 2, ...): exponential, with
// jitter so that the callers a failure hit together do not retry together.
func (p retryPolicy) backoff(n int) time.Duration {
	d := min(p.base<<min(n-1, 16), p.maxDelay)
	return d/2 + rand.N(d/2+1)
}

// retrier retries store operations that failed for a reason a new attempt,
// on a fresh connection, may not meet.
type retrier struct {
	policy  retryPolicy
	log     *slog.Logger
	retries atomic.Int64
	// failedAt is when a transient failure was last seen (UnixNano): every
	// pooled connection last used before it is pinged before its next use.
	failedAt atomic.Int64
	// wrap, when set (by tests), runs each attempt in place of a plain call.
	wrap func(ctx context.Context, op string, n int, run func(context.Context) error) error
}

func newRetrier(log *slog.Logger) retrier {
	return retrier{policy: defaultRetryPolicy(), log: log.With("component", "models")}
}

// Retries returns how many times store operations were retried after a
// transient failure since the database was opened.
func (db *DB) Retries() int64 { return db.retry.retries.Load() }

// do runs attempt until it succeeds, fails for a reason that is not
// transient, or the retry budget or ctx runs out; then it returns an error
// wrapping ErrUnavailable and the last cause (and ctx's error, if it ended).
// attempt's retry is true on every attempt but the first: an attempt that
// failed may have committed anyway (its COMMIT went out, its answer did
// not), and a retry must then recognise its own earlier work.
//
// Each failed attempt leaves its connection to be discarded by the pool, and
// marks every other pooled connection for a ping before its next use (see
// shouldPing), so that a retry gets through a pool full of connections that
// a server restart killed.
func (r *retrier) do(ctx context.Context, op string, attempt func(ctx context.Context, retry bool) error) error {
	err := r.try(ctx, op, 0, attempt)
	if err == nil || !isTransient(err) {
		return err
	}
	p := r.policy
	rctx, cancel := context.WithTimeout(ctx, p.budget)
	defer cancel()
	last, attempts := err, 1
	for attempts < p.attempts && rctx.Err() == nil {
		r.failed(ctx, op, attempts, last)
		if !sleep(rctx, p.backoff(attempts)) {
			break
		}
		r.retries.Add(1)
		err = r.try(rctx, op, attempts, attempt)
		attempts++
		if err == nil {
			return nil
		}
		if rctx.Err() != nil {
			break // the budget or ctx ran out; err is most likely that
		}
		if !isTransient(err) {
			return err
		}
		last = err
	}
	return fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, attempts, errors.Join(last, ctx.Err()))
}

func (r *retrier) try(ctx context.Context, op string, n int, attempt func(context.Context, bool) error) error {
	if r.wrap != nil {
		return r.wrap(ctx, op, n, func(ctx context.Context) error { return attempt(ctx, n > 0) })
	}
	return attempt(ctx, n > 0)
}

// failed records a transient failure before retry n. Only the first retry of
// an operation is a warning: one failure of the database fails every
// operation in flight at once, and a request that fails for good is logged
// again, with its answer.
func (r *retrier) failed(ctx context.Context, op string, n int, err error) {
	r.failedAt.Store(time.Now().UnixNano())
	level := slog.LevelWarn
	if n > 1 {
		level = slog.LevelDebug
	}
	r.log.Log(ctx, level, "database operation failed, retrying", "op", op, "retry", n, "error", err.Error())
}

// shouldPing is the PostgreSQL pool's liveness check before it reuses a
// connection: pgx's default (a ping after a second idle) and, after a
// transient failure, a ping of every connection last used before it. A
// failover or restart kills every pooled connection at once, but each only
// shows it when used; without this, every retry could meet another dead one.
// A failed ping makes database/sql discard the connection and take another,
// unseen by the caller.
func (r *retrier) shouldPing(_ context.Context, p stdlib.ShouldPingParams) bool {
	return p.IdleDuration > time.Second || time.Now().Add(-p.IdleDuration).UnixNano() <= r.failedAt.Load()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// transientCode reports whether a SQLSTATE says that the same work may
// succeed on another connection or in another transaction: the connection
// exceptions (class 08), a server shutting down, crashing or starting up
// (57P01-57P03), an idle session timed out (57P05), too many connections
// (53300, as when every client reconnects at once after a failover), and
// serialization failures and deadlocks (40001, 40P01), whose transaction was
// rolled back.
func transientCode(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "57P05", "53300", "40001", "40P01":
		return true
	}
	return strings.HasPrefix(code, "08")
}

// isTransient reports whether err is a failure that the same operation may
// not meet again on a fresh connection a moment later. The end of a caller's
// context is not: nobody waits for a retry then.
//
// What pgx v5 (through database/sql) returns, as observed: a
// *pgconn.PgError FATAL 57P01 for the statement, BEGIN or COMMIT that first
// uses a connection whose server process was terminated (a failover, a
// restart, a pooler reset), in use or idle; then "conn closed"
// (pgconn.ErrConnClosed, safe to retry) for the rest of its transaction.
// When the network cuts a connection instead: driver.ErrBadConn for a
// statement in a transaction, a write error (*net.OpError, connection reset
// by peer) at COMMIT, and a *pgconn.ConnectError (connection refused) for
// new connections while the server is away. io.EOF and io.ErrUnexpectedEOF
// are reads cut short.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	// A connection that could not be made in time is the database's doing,
	// even though a dial timeout also matches context.DeadlineExceeded; when
	// it was the caller's context that ended, do stops retrying anyway.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	var sqliteErr sqlite3.Error
	if errors.As(err, &sqliteErr) {
		return sqliteErr.Code == sqlite3.ErrBusy || sqliteErr.Code == sqlite3.ErrLocked
	}
	var netErr net.Error
	return pgconn.SafeToRetry(err) ||
		errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}
