package models

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Clock tells the time by the database server's clock, so that every instance
// of a cluster stamps and judges token times (rotation, the reuse window,
// expiry) alike, however far its own clock has drifted. It reads the local
// clock corrected by an offset that Sync measures against the database; Now
// itself costs no round trip. On SQLite, whose database lives on this host,
// the local clock is the database's and the offset stays zero.
//
// A Clock is safe for concurrent use.
type Clock struct {
	db     *DB
	local  func() time.Time
	offset atomic.Int64 // database minus local, in nanoseconds
}

// Clock returns a Clock over local (time.Now in production) for db. Its
// offset is zero until Sync runs.
func (db *DB) Clock(local func() time.Time) *Clock {
	return &Clock{db: db, local: local}
}

// Now returns the database's time, as estimated at the last Sync.
func (c *Clock) Now() time.Time {
	return c.local().Add(time.Duration(c.offset.Load()))
}

// Sync measures the database clock's offset from the local one, assuming the
// query's round trip is symmetric (its error is at most half the round trip),
// and returns it.
func (c *Clock) Sync(ctx context.Context) (time.Duration, error) {
	if c.db.dialect != "postgres" {
		return 0, nil
	}
	var remote time.Time
	before := c.local()
	// clock_timestamp(), not now(): the time of the call, not of a transaction's start.
	if err := c.db.read.WithContext(ctx).Raw("SELECT clock_timestamp()").Scan(&remote).Error; err != nil {
		return time.Duration(c.offset.Load()), fmt.Errorf("read the database clock: %w", err)
	}
	after := c.local()
	mid := before.Add(after.Sub(before) / 2)
	offset := remote.Sub(mid)
	c.offset.Store(int64(offset))
	return offset, nil
}
