package barrier

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestRelease: no fn runs before atRelease, each index runs once,
// and Release returns only after every fn has.
func TestRelease(t *testing.T) {
	t.Parallel()
	const n = 500
	var released atomic.Bool
	var ran atomic.Int64
	calls := make([]atomic.Int32, n)
	var deadline time.Time
	Release(n,
		func(at time.Time) {
			if got := ran.Load(); got != 0 {
				t.Errorf("at the release, %d goroutines had already run", got)
			}
			deadline = at.Add(time.Hour)
			released.Store(true)
		},
		func(i int) {
			if !released.Load() {
				t.Errorf("fn(%d) ran before the release", i)
			}
			if deadline.IsZero() {
				t.Errorf("fn(%d) does not see what atRelease set", i)
			}
			calls[i].Add(1)
			ran.Add(1)
		})
	if got := ran.Load(); got != n {
		t.Fatalf("Release returned after %d of %d calls", got, n)
	}
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Errorf("fn(%d) ran %d times, want 1", i, c)
		}
	}
}

// TestReleaseWithoutAtRelease: a nil atRelease is allowed.
func TestReleaseWithoutAtRelease(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	Release(200, nil, func(int) { ran.Add(1) })
	if got := ran.Load(); got != 200 {
		t.Errorf("ran %d times, want 200", got)
	}
}
