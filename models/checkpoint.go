package models

import (
	"context"
	"database/sql"
	"log/slog"
	"time"
)

// checkpointInterval is how often the checkpointer copies the WAL back into
// the database file: at the refresh rates of a small machine the WAL grows
// by a few thousand pages in that time.
const checkpointInterval = 100 * time.Millisecond

// checkpointer runs SQLite's WAL checkpoints from a goroutine of its own, on a
// connection of the read pool, with automatic checkpoints off
// (wal_autocheckpoint=0).
//
// An automatic checkpoint runs inside the commit that takes the WAL past its
// threshold: that group's callers, and every group queued behind it on the
// single writer, wait for thousands of pages to be copied and the database
// file to be fsynced. With a million rows or more those pages are spread over
// the file, and that wait was the p99 of a steady load. A PASSIVE checkpoint
// here waits for no reader or writer: commits go on while it copies, and no
// request waits for it.
type checkpointer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startCheckpointer(pool *sql.DB, log *slog.Logger) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(checkpointInterval)
		defer tick.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := pool.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Logged once per run of failures: the next tick tries again,
				// and the WAL only grows meanwhile.
				log.Warn("sqlite checkpoint failed; the WAL grows until one succeeds", "error", err)
				failing = true
			case err == nil && failing:
				log.Info("sqlite checkpoints succeed again")
				failing = false
			}
		}
	}()
	return c
}

// close stops the checkpointer and waits for it. Closing the last
// connection then checkpoints what is left and removes the WAL.
func (c *checkpointer) close() {
	c.cancel()
	<-c.done
}
