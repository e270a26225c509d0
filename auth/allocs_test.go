package auth_test

import (
	"context"
	"testing"
)

// refreshAllocs is the number of heap allocations of one refresh through
// auth.Service on the default SQLite configuration (a rotation committed
// alone), as BenchmarkServiceRefresh reports them and BENCHMARKS.md states
// them: the service's own (about 25: singleflight's call, the lock key,
// the JWT string, the successor, its seal and row) and the rest in
// database/sql, the SQLite driver and the group commit of package models.
const refreshAllocs = 158

// allocsMargin absorbs what does not belong to the refresh: a background
// goroutine of database/sql or the runtime allocating during the
// measurement, and under the race detector its own allocations and the
// HMACs sync.Pool drops (raceAllocs).
const allocsMargin = 8 + raceAllocs

// TestRefreshAllocations holds the allocations per refresh: a change that
// adds allocations to the hot path fails here, by count, not by time. When
// a change removes some, lower refreshAllocs (and BENCHMARKS.md) with it.
func TestRefreshAllocations(t *testing.T) {
	svc := newBenchService(t)
	token := registerN(t, svc, 1)[0]
	refresh := func() {
		tok, err := svc.Refresh(context.Background(), token)
		if err != nil {
			t.Fatal(err)
		}
		token = tok.RefreshToken
	}
	refresh() // the first refresh prepares what later ones reuse (pools, metric children)
	if got := testing.AllocsPerRun(200, refresh); got > refreshAllocs+allocsMargin {
		t.Errorf("a refresh allocates %.1f times, want at most %d (+%d margin): see BenchmarkServiceRefresh -benchmem", got, refreshAllocs, allocsMargin)
	} else {
		t.Logf("%.1f allocations per refresh (held at %d + %d)", got, refreshAllocs, allocsMargin)
	}
}
