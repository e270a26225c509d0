// Package barrier starts many goroutines' work at one instant: the load
// tool's storms and chains, the demo's storms and the storm benchmark
// release their requests through it, so that what they time starts when the
// work does.
package barrier

import (
	"sync"
	"time"
)

// Release runs fn(0) to fn(n-1) on n goroutines and lets them go at
// once: every goroutine is started and waiting on one channel before the
// channel is closed, so that what a run measures starts when the work does,
// not while goroutines are still being created, and a storm's requests reach
// the server as close together as the machine allows. atRelease, when not
// nil, runs once every goroutine waits and before any is let go, with the
// time of the release; fn may read what it sets. Release returns when
// every fn has returned, with the time from the release to the last return.
func Release(n int, atRelease func(released time.Time), fn func(i int)) time.Duration {
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			fn(i)
		})
	}
	ready.Wait()
	released := time.Now()
	if atRelease != nil {
		atRelease(released)
	}
	close(start)
	done.Wait()
	return time.Since(released)
}
