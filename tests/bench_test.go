package tests

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRefresh measures the refresh endpoint end to end on SQLite: an
// httptest server, 50 parallel clients each chaining refreshes with the token
// it last received. Compare its refreshes/s with BenchmarkSQLiteFloor.
func BenchmarkRefresh(b *testing.B) {
	a := newApp(b, defaultConfig())
	benchChains(b, a, a.refresh)
}

// benchChains has 50 parallel clients of a, each with its own session, chain
// refreshes through refresh with the token it last received, and reports
// refreshes/s.
func benchChains(b *testing.B, a *app, refresh func(token string) (response, error)) {
	const clients = 50
	tokens := make(chan string, clients)
	for range clients {
		tokens <- a.register(b).RefreshToken
	}
	b.ReportAllocs()
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := <-tokens
		for pb.Next() {
			r, err := refresh(tok)
			if err != nil {
				b.Errorf("refresh: %v", err)
				return
			}
			if tok, err = tokenOf(r); err != nil {
				b.Error(err) // not Fatal: RunParallel's goroutines are not the benchmark's
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
}

// BenchmarkRefreshStorm fires 1,000 refreshes of one token at once through
// the HTTP server and reports the time from release to the last answer; each
// storm must take exactly one rotation.
func BenchmarkRefreshStorm(b *testing.B) {
	a := newApp(b, defaultConfig())
	const n = 1000
	// Warm n keep-alive connections so that the storm is not a dial storm.
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { a.do(http.MethodGet, "/health", "", nil) })
	}
	wg.Wait()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		s := a.register(b)
		before := a.counter(b, "auth_refresh_total", "result", "rotated")
		start := make(chan struct{})
		var failed atomic.Int32
		var done sync.WaitGroup
		for range n {
			done.Add(1)
			go func() {
				defer done.Done()
				<-start
				if r, err := a.refresh(s.RefreshToken); err != nil || r.Status != http.StatusOK {
					failed.Add(1)
				}
			}()
		}
		runtime.Gosched()
		b.StartTimer()
		t0 := time.Now()
		close(start)
		done.Wait()
		total += time.Since(t0)
		if failed.Load() != 0 {
			b.Fatalf("%d of %d refreshes failed", failed.Load(), n)
		}
		if got := a.counter(b, "auth_refresh_total", "result", "rotated") - before; got != 1 {
			b.Fatalf("rotations in one storm = %v, want 1", got)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/storm")
}

// BenchmarkRefreshHandler is BenchmarkRefresh without the network and the
// client: 50 goroutines call the server's ServeHTTP directly, so B/op and
// allocs/op are the server's own cost of a refresh.
func BenchmarkRefreshHandler(b *testing.B) {
	a := newApp(b, defaultConfig())
	handler := a.Server.Config.Handler
	benchChains(b, a, func(tok string) (response, error) {
		req := httptest.NewRequest(http.MethodPost, "/auth/refresh", strings.NewReader(`{"refreshToken":"`+tok+`"}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return response{Status: rec.Code, Body: rec.Body.Bytes()}, nil
	})
}
