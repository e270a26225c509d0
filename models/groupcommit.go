package models

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// maxGroup bounds how many rotations share one transaction, and so how long
// the write lock is held at a time.
const maxGroup = 64

// commitTimeout bounds the transaction of every group, a group of one
// included. The transaction runs detached from the requests in it: one
// request's end must not fail the others.
const commitTimeout = 10 * time.Second

// errClosed answers a rotation that was still queued when the database was
// closed: it was not applied.
var errClosed = errors.New("models: database closed")

// rotation is one call of DB.Rotate waiting for its group's commit: the
// compare-and-swap of token id, and the successor to store when it wins.
type rotation struct {
	id     int64
	now    time.Time
	sealed []byte
	next   *RefreshToken
	result chan error // buffered: a committer never waits for a caller
}

// CommitStats describes one committed group of rotations (see OnGroupCommit).
type CommitStats struct {
	// Size is the number of rotations the group's transaction committed.
	Size int
	// Duration is how long the commit took: on SQLite the COMMIT, which is
	// where the fsync of synchronous=FULL is paid; on PostgreSQL the group's
	// single statement, which commits itself (its WAL flush included).
	Duration time.Duration
}

// groupWriter applies a group of rotations in one transaction and returns
// each rotation's result (nil, or ErrConflict for a lost compare-and-swap)
// and how long the commit took, or an error for the whole group, which then
// wrote nothing.
type groupWriter func(ctx context.Context, group []*rotation) (results []error, commit time.Duration, err error)

// committer commits the rotations of concurrent DB.Rotate calls in groups
// (group commit): rotations that arrive while a group commits go together in
// the next one, each still all-or-nothing, and the commit (the fsync that
// bounds SQLite's write rate, a statement and a WAL flush on PostgreSQL) is
// paid once per group instead of once per rotation. At low load every group
// has one rotation.
//
// The groups are committed by goroutines the committer owns (started by
// Open, stopped and joined by Close), not by a request that happens to lead:
// a request then never commits anyone else's group. It waits for its own
// group's result, or its context, and nothing else; no request's tenure (nor
// the token lock it holds meanwhile) depends on how many others arrive. The
// price is a goroutine wake-up per group, microseconds against a commit's
// milliseconds. (The alternative, a leader that commits its own group and
// then hands leadership to a waiter of the next one, must also hand it on
// when that waiter's context ends, which is where the subtle bugs live.)
//
// Invariants:
//
//   - One writer. On SQLite a single goroutine commits, on the single
//     write connection, so groups never contend for SQLite's write lock. On
//     PostgreSQL, one goroutine per instance as well (postgresCommitters);
//     the committers of other instances write concurrently, and the row
//     locks of the compare-and-swap keep them correct.
//   - Order. Queued rotations are taken first come, first served, at most
//     maxGroup at a time; inside a group the compare-and-swaps apply in that
//     order, so of two rotations of one token in a group the first wins and
//     the second gets ErrConflict, exactly as if they had run one after the
//     other. A request waits for its own group and at most the one in flight
//     when it arrived (more only when over maxGroup rotations are queued).
//   - Failure. A group whose transaction fails wrote nothing. When it failed
//     for a reason of its own (a constraint, say), every rotation of it is
//     tried again in a transaction of its own, so one bad rotation cannot
//     fail the others. When it failed transiently (a lost connection) or ran
//     out of time, every rotation gets that error and its caller's retry
//     policy decides (see DB.Rotate).
//   - Time. Every transaction, a group of one included, runs under
//     commitTimeout. A request whose context ends returns at once; its
//     rotation stays queued and may still commit (a replay within the reuse
//     window then finds the successor).
//   - Panics. A panic while a group commits answers each rotation of that
//     group by panicking in its caller's goroutine (as x/sync/singleflight
//     does), with the committer's stack; the committer goes on with the next
//     group, so no request is stranded.
type committer struct {
	queue   chan *rotation
	stop    chan struct{} // closed by close: commit what is queued, then return
	stopped chan struct{} // closed once every committing goroutine returned
	once    sync.Once
	wg      sync.WaitGroup

	write    groupWriter
	timeout  time.Duration
	onCommit func(CommitStats) // nil: nobody asked
	commits  atomic.Int64      // transactions committed, for tests

	// beforeWrite, when set (by tests), runs before each transaction with
	// its context and group.
	beforeWrite func(ctx context.Context, group []*rotation)
}

// newCommitter returns a committer whose goroutines (as many as writers)
// commit groups with write until close.
func newCommitter(writers int, write groupWriter, onCommit func(CommitStats)) *committer {
	c := &committer{
		// A queue of a few groups: beyond it, callers wait to enqueue (or
		// for their context) instead of piling up.
		queue:    make(chan *rotation, 4*maxGroup),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		write:    write,
		timeout:  commitTimeout,
		onCommit: onCommit,
	}
	for range writers {
		c.wg.Go(c.run)
	}
	go func() { c.wg.Wait(); close(c.stopped) }()
	return c
}

// close commits the rotations already queued, stops the committer's
// goroutines and waits for them. Later rotations fail with errClosed.
func (c *committer) close() {
	c.once.Do(func() { close(c.stop) })
	<-c.stopped
}

// submit queues r and waits for its result, or for ctx to end.
func (c *committer) submit(ctx context.Context, r *rotation) error {
	r.result = make(chan error, 1)
	select {
	case c.queue <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return errClosed
	}
	var err error
	select {
	case err = <-r.result:
	case <-ctx.Done():
		// The rotation may still commit; a replay within the reuse window
		// then finds it and answers with its successor.
		return ctx.Err()
	case <-c.stopped:
		select {
		case err = <-r.result: // answered before the committer stopped
		default:
			return errClosed // queued after the last committer looked
		}
	}
	if p, ok := err.(*commitPanic); ok {
		panic(p)
	}
	return err
}

// run commits groups until close, then commits what is left in the queue.
func (c *committer) run() {
	for {
		select {
		case r := <-c.queue:
			c.commitGroup(c.gather(r))
		case <-c.stop:
			for {
				select {
				case r := <-c.queue:
					c.commitGroup(c.gather(r))
				default:
					return
				}
			}
		}
	}
}

// gather returns first and the rotations queued behind it, at most maxGroup.
func (c *committer) gather(first *rotation) []*rotation {
	group := []*rotation{first}
	for len(group) < maxGroup {
		select {
		case r := <-c.queue:
			group = append(group, r)
		default:
			return group
		}
	}
	return group
}

// commitGroup commits group and answers each of its rotations.
func (c *committer) commitGroup(group []*rotation) {
	defer func() {
		if v := recover(); v != nil {
			p := &commitPanic{value: v, stack: debug.Stack()}
			for _, r := range group {
				select {
				case r.result <- p:
				default: // already answered
				}
			}
		}
	}()
	results, err := c.commitOnce(group)
	if err != nil && len(group) > 1 && !isTransient(err) && !errors.Is(err, context.DeadlineExceeded) {
		for _, r := range group {
			results, err := c.commitOnce([]*rotation{r})
			if err == nil {
				err = results[0]
			}
			r.result <- err
		}
		return
	}
	for i, r := range group {
		if err != nil {
			r.result <- err
		} else {
			r.result <- results[i]
		}
	}
}

// commitOnce runs group in one transaction, under the committer's timeout.
func (c *committer) commitOnce(group []*rotation) ([]error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if c.beforeWrite != nil {
		c.beforeWrite(ctx, group)
	}
	results, took, err := c.write(ctx, group)
	if err != nil {
		return nil, err
	}
	c.commits.Add(1)
	if c.onCommit != nil {
		c.onCommit(CommitStats{Size: len(group), Duration: took})
	}
	return results, nil
}

// commitPanic is a panic of a committer goroutine, carried to the callers of
// the group that panicked.
type commitPanic struct {
	value any
	stack []byte
}

func (p *commitPanic) Error() string {
	return fmt.Sprintf("models: panic while committing rotations: %v\n\n%s", p.value, p.stack)
}
