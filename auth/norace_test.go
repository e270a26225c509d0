//go:build !race

package auth_test

// raceAllocs is what the race detector adds to a refresh's allocations:
// nothing, without it.
const raceAllocs = 0
