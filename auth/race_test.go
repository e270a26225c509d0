//go:build race

package auth_test

// raceAllocs is what the race detector adds to a refresh's allocations:
// sync.Pool drops a quarter of what is put back, and the detector's own
// bookkeeping allocates (measured: 167-169 against 159 without it).
const raceAllocs = 16
