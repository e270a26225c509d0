package auth_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/mutex"
)

// BenchmarkRefreshCollapse measures singleflight's collapse: 100 callers
// refresh one token at once and share one rotation. The baseline,
// BenchmarkRefreshCollapse/callers=1, is a lone refresh in the same run.
func BenchmarkRefreshCollapse(b *testing.B) {
	for _, callers := range []int{1, 100} {
		b.Run("callers="+strconv.Itoa(callers), func(b *testing.B) {
			store := &countingStore{DB: newDB(b)}
			svc := newService(b, store, mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Minute}))
			sess, err := svc.Register(context.Background(), "bench@example.com", "password123", nil)
			if err != nil {
				b.Fatal(err)
			}
			token := sess.RefreshToken
			b.ReportAllocs()
			for b.Loop() {
				start := make(chan struct{})
				var wg sync.WaitGroup
				results := make([]string, callers)
				for i := range callers {
					wg.Go(func() {
						<-start
						tok, err := svc.Refresh(context.Background(), token)
						if err != nil {
							b.Error(err)
						}
						results[i] = tok.RefreshToken
					})
				}
				close(start)
				wg.Wait()
				for _, r := range results {
					if r != results[0] {
						b.Fatal("callers got different successors")
					}
				}
				token = results[0]
			}
			b.ReportMetric(float64(store.rotations)/float64(b.N), "rotations/op")
		})
	}
}

// newBenchService is the service as main builds it on the default
// configuration: SQLite with synchronous=FULL and group commit, the
// in-process lock, and Prometheus metrics.
func newBenchService(b testing.TB) *auth.Service {
	b.Helper()
	svc, err := auth.NewService(newDB(b), mutex.NewMemory(mutex.MemoryOptions{Timeout: 5 * time.Second}), auth.Config{
		Secret:      []byte("a-benchmark-secret-of-32-bytes!!"),
		ReuseWindow: 10 * time.Second,
		BcryptCost:  bcrypt.MinCost,
		Metrics:     auth.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// registerN registers n users and returns their first refresh tokens.
func registerN(b testing.TB, svc *auth.Service, n int) []string {
	b.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		sess, err := svc.Register(context.Background(), fmt.Sprintf("bench%d@example.com", i), "password123", nil)
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = sess.RefreshToken
	}
	return tokens
}

// BenchmarkServiceRefresh is the hot path without HTTP: one client chaining
// refreshes through auth.Service on SQLite, each refresh presenting the
// token the one before returned. Every refresh is a rotation, committed
// alone (no other rotation to share its group with): its time is mostly
// the commit's fsync, its allocations are the service's and the driver's.
func BenchmarkServiceRefresh(b *testing.B) {
	svc := newBenchService(b)
	token := registerN(b, svc, 1)[0]
	b.ReportAllocs()
	for b.Loop() {
		tok, err := svc.Refresh(context.Background(), token)
		if err != nil {
			b.Fatal(err)
		}
		token = tok.RefreshToken
	}
}

// BenchmarkServiceRefreshParallel is the same with 50 clients at once, as
// the chain load of BENCHMARKS.md has: each goroutine chains its own user's
// tokens, so rotations share group commits. ns/op is the wall time per
// refresh of all of them together (its inverse, refreshes/s, is reported);
// cpu-us/op is the process's CPU time per refresh (getrusage, user and
// system, every thread: the service, database/sql, SQLite and the garbage
// collector), the figure bench/sqlite.sh measures for the server, without HTTP.
func BenchmarkServiceRefreshParallel(b *testing.B) {
	const clients = 50
	svc := newBenchService(b)
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((clients + procs - 1) / procs)
	firsts := make(chan string, clients+procs)
	for _, t := range registerN(b, svc, cap(firsts)) {
		firsts <- t
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		token := <-firsts
		for pb.Next() {
			tok, err := svc.Refresh(context.Background(), token)
			if err != nil {
				b.Error(err)
				return
			}
			token = tok.RefreshToken
		}
	})
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
}
