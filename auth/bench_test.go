package auth_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

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
