// Package mutex provides per-key mutual exclusion: at most one holder of a
// key at a time, in one process (Memory) or across every process that shares
// a Redis server (Redis).
//
// The locks are an optimisation, not a guarantee. They spare concurrent
// callers work that would lose anyway; the caller keeps its data correct with
// its own compare-and-swap (a conditional UPDATE in a database transaction),
// which must hold even when two holders overlap: a Redis holder paused past
// its lease, a Redis that restarts, a lock that cannot be had at all.
//
// # Contract
//
// Memory and Redis share one method, WithLock(ctx, key, fn), and one contract,
// which consumers name in an interface of their own:
//
//   - fn runs at most once, only while the lock for key is held, and the lock
//     is released when fn returns or panics (the panic propagates).
//   - When the lock cannot be had, fn does not run and WithLock returns an
//     error matching ErrLockTimeout (a live holder kept it past the timeout,
//     or ctx ended), ErrAbandoned (Redis: its holder stopped renewing it) or
//     ErrUnavailable (Redis: the server does not answer).
//   - When fn ran, WithLock returns fn's error; with Redis it is joined with
//     ErrLeaseLost when Redis showed that the lease ended, or passed to
//     another holder, before fn returned. fn is not interrupted either way.
//   - fn's context reports Contended when fn had to wait for another holder,
//     so fn reads again what that holder may have changed.
package mutex
