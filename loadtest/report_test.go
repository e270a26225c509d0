package loadtest

import (
	"slices"
	"testing"
	"time"
)

// ramp returns the samples 1ms, 2ms, ..., n ms.
func ramp(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i+1) * time.Millisecond
	}
	return s
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"one sample p50", ramp(1), 50, time.Millisecond},
		{"one sample p99", ramp(1), 99, time.Millisecond},
		{"ten p50", ramp(10), 50, 5 * time.Millisecond},
		{"ten p90", ramp(10), 90, 9 * time.Millisecond},
		{"ten p99", ramp(10), 99, 10 * time.Millisecond},
		{"hundred p50", ramp(100), 50, 50 * time.Millisecond},
		{"hundred p99", ramp(100), 99, 99 * time.Millisecond},
		{"hundred p100", ramp(100), 100, 100 * time.Millisecond},
		{"thousand p99", ramp(1000), 99, 990 * time.Millisecond},
		{"thousand p99.9", ramp(1000), 99.9, 999 * time.Millisecond},
		{"tiny p is the minimum", ramp(10), 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.samples), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	samples := ramp(200)
	slices.Reverse(samples) // summarize sorts
	got := summarize(samples)
	want := latencyReport{Samples: 200, Mean: 100.5, P50: 100, P90: 180, P99: 198, Max: 200}
	if got != want {
		t.Errorf("summarize(1..200ms) = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (latencyReport{}) {
		t.Errorf("summarize(nil) = %+v, want zeros", got)
	}
}

func TestTallyGroupsErrorsByMessage(t *testing.T) {
	t.Parallel()
	a, b := newTally(), newTally()
	for range 3 {
		a.add(outcome{status: 200, token: "next"})
	}
	for range 2 {
		a.add(outcome{status: 500, message: "record not found"})
	}
	a.add(outcome{status: 401, message: "Invalid refresh token"})
	b.add(outcome{status: 401, message: "Invalid refresh token"})
	b.add(outcome{status: 401, message: "Invalid refresh token"})
	b.add(outcome{status: 500, message: "Internal server error"})
	b.add(outcome{message: "dial tcp 127.0.0.1:9: connect: connection refused"})
	a.merge(b)

	got := a.report()
	if got.Requests != 10 || got.OK != 3 || got.Failed != 7 {
		t.Errorf("requests, ok, failed = %d, %d, %d; want 10, 3, 7", got.Requests, got.OK, got.Failed)
	}
	wantStatuses := map[int]int{200: 3, 401: 3, 500: 3} // the transport error has no status
	if len(got.Statuses) != len(wantStatuses) {
		t.Errorf("statuses = %v, want %v", got.Statuses, wantStatuses)
	}
	for s, n := range wantStatuses {
		if got.Statuses[s] != n {
			t.Errorf("statuses = %v, want %v", got.Statuses, wantStatuses)
		}
	}
	wantErrors := []errorCount{ // the largest group first, then by status and message
		{3, 401, "Invalid refresh token"},
		{2, 500, "record not found"},
		{1, 0, "dial tcp 127.0.0.1:9: connect: connection refused"},
		{1, 500, "Internal server error"},
	}
	if !slices.Equal(got.Errors, wantErrors) {
		t.Errorf("errors = %v, want %v", got.Errors, wantErrors)
	}
	if errs := newTally().report().Errors; errs == nil || len(errs) != 0 {
		t.Errorf("errors of an empty tally = %#v, want an empty slice (JSON [])", errs)
	}
}

func TestFmtStatuses(t *testing.T) {
	t.Parallel()
	if got, want := fmtStatuses(map[int]int{401: 199, 200: 1}), "200×1 401×199"; got != want {
		t.Errorf("fmtStatuses = %q, want %q", got, want)
	}
}
