package models

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxGroup bounds how many rotations share one transaction, and so how long
// the write lock is held at a time.
const maxGroup = 64

// groupTimeout bounds one group's transaction; it runs detached from the
// request that happens to lead it, whose end must not fail the others.
const groupTimeout = 10 * time.Second

// rotation is one Rotate call.
type rotation struct {
	id     int64
	now    time.Time
	sealed []byte
	next   *RefreshToken
	done   chan error // buffered: the leader never waits for a caller
}

// groupCommit batches concurrent rotations into shared transactions. There is
// no background goroutine: the first caller to find no group running leads
// and commits groups until the queue is empty; the others wait for their
// result. At low load every group has one rotation, and nothing waits.
type groupCommit struct {
	mu       sync.Mutex
	queue    []*rotation
	leading  bool
	commits  atomic.Int64   // transactions committed, for tests and benchmarks
	onCommit func(size int) // reports each group's size; nil: nobody asked
}

func (g *groupCommit) rotate(ctx context.Context, db *sql.DB, h *hotPath, r *rotation) error {
	r.done = make(chan error, 1)
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if lead {
		g.lead(context.WithoutCancel(ctx), db, h)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		// The rotation may still commit; a replay within the reuse window
		// then finds it and answers with its successor.
		return ctx.Err()
	}
}

// lead commits groups until nobody is waiting.
func (g *groupCommit) lead(ctx context.Context, db *sql.DB, h *hotPath) {
	var batch []*rotation
	defer func() {
		// A panic (a driver bug, say) must not leave the group without a
		// leader: every later rotation would wait forever. Everyone waiting
		// gets an error, and the panic goes on to the leader's caller.
		if r := recover(); r != nil {
			g.mu.Lock()
			waiting := append(batch, g.queue...)
			g.queue, g.leading = nil, false
			g.mu.Unlock()
			for _, w := range waiting {
				select {
				case w.done <- fmt.Errorf("group commit: panic: %v", r):
				default: // already answered
				}
			}
			panic(r)
		}
	}()
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxGroup)
		if n == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		batch = make([]*rotation, n)
		copy(batch, g.queue)
		g.queue = append(g.queue[:0], g.queue[n:]...)
		g.mu.Unlock()
		g.commit(ctx, db, h, batch)
		g.commits.Add(1)
		if g.onCommit != nil {
			g.onCommit(len(batch))
		}
	}
}

// commit runs a group in one transaction. Should the transaction fail as a
// whole, each rotation is tried again in a transaction of its own, so that one
// bad rotation cannot fail the others.
func (g *groupCommit) commit(ctx context.Context, db *sql.DB, h *hotPath, batch []*rotation) {
	if len(batch) == 1 {
		batch[0].done <- h.rotateAlone(ctx, db, batch[0])
		return
	}
	ctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	results, err := h.rotateGroup(ctx, db, batch)
	if err != nil {
		for _, r := range batch {
			r.done <- h.rotateAlone(ctx, db, r)
		}
		return
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// rotateGroup applies every rotation of batch in one transaction and returns
// each one's result (nil or ErrConflict), or an error for the whole group.
func (h *hotPath) rotateGroup(ctx context.Context, db *sql.DB, batch []*rotation) ([]error, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() // a no-op after Commit; on an error or a panic it frees the write connection
	update, insert := tx.StmtContext(ctx, h.rotate), tx.StmtContext(ctx, h.insert)
	results := make([]error, len(batch))
	for i, r := range batch {
		if results[i], err = applyRotation(ctx, update, insert, r); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return results, nil
}

// rotateAlone applies one rotation in a transaction of its own.
func (h *hotPath) rotateAlone(ctx context.Context, db *sql.DB, r *rotation) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit; on an error or a panic it frees the write connection
	conflict, err := applyRotation(ctx, tx.StmtContext(ctx, h.rotate), tx.StmtContext(ctx, h.insert), r)
	if err != nil {
		return err
	}
	if conflict != nil {
		return conflict // rolled back by the deferred Rollback
	}
	return tx.Commit()
}

// applyRotation runs one rotation's compare-and-swap and, when it wins, the
// insert of the successor. A lost compare-and-swap is the result ErrConflict,
// with nothing written; err is for statements that failed.
func applyRotation(ctx context.Context, update, insert *sql.Stmt, r *rotation) (result, err error) {
	res, err := update.ExecContext(ctx, r.now, r.next.TokenHash, r.sealed, r.id)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != 1 {
		return ErrConflict, nil
	}
	next := r.next
	if _, err := insert.ExecContext(ctx, next.TokenHash, next.UserID, next.FamilyID, next.ParentID, next.ExpiresAt, next.CreatedAt); err != nil {
		return nil, err
	}
	return nil, nil
}
