package mutex

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestMemoryNoLeak checks that a million distinct keys, used one after another
// and then held all at once, leave no entry and no memory behind.
func TestMemoryNoLeak(t *testing.T) {
	m := NewMemory(MemoryOptions{Timeout: time.Second})
	base := heapInUse()

	noop := func(context.Context) error { return nil }
	for i := range 1_000_000 {
		if err := m.WithLock(t.Context(), "refresh_token_"+strconv.Itoa(i), noop); err != nil {
			t.Fatalf("WithLock = %v", err)
		}
	}
	if n := m.ActiveLockCount(); n != 0 {
		t.Fatalf("ActiveLockCount after 1,000,000 keys = %d, want 0", n)
	}

	// A burst: 200,000 keys held at the same time, then released.
	const burst = 200_000
	for i := range burst {
		if _, err := m.acquire(t.Context(), "burst_"+strconv.Itoa(i)); err != nil {
			t.Fatalf("acquire = %v", err)
		}
	}
	if n := m.ActiveLockCount(); n != burst {
		t.Fatalf("ActiveLockCount while %d keys are held = %d", burst, n)
	}
	for i := range burst {
		m.release("burst_" + strconv.Itoa(i))
	}
	if n := m.ActiveLockCount(); n != 0 {
		t.Fatalf("ActiveLockCount after the burst = %d, want 0", n)
	}
	if grown := int64(heapInUse()) - int64(base); grown > 4<<20 {
		t.Errorf("heap grew by %d KiB after all keys were released, want < 4096 KiB", grown>>10)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // the second cycle frees what the pool's victim cache kept
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func BenchmarkWithLock(b *testing.B) {
	noop := func(context.Context) error { return nil }
	ctx := context.Background()
	b.Run("uncontended", func(b *testing.B) {
		m := NewMemory(MemoryOptions{Timeout: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			_ = m.WithLock(ctx, "refresh_token_0123456789abcdef", noop)
		}
	})
	b.Run("contended-one-key", func(b *testing.B) {
		m := NewMemory(MemoryOptions{Timeout: time.Minute})
		b.ReportAllocs()
		b.SetParallelism(8) // 8 goroutines per core fight for one key
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = m.WithLock(ctx, "refresh_token_0123456789abcdef", noop)
			}
		})
	})
	b.Run("parallel-distinct-keys", func(b *testing.B) {
		m := NewMemory(MemoryOptions{Timeout: time.Minute})
		var next sync.Mutex
		id := 0
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			next.Lock()
			key := "refresh_token_" + strconv.Itoa(id)
			id++
			next.Unlock()
			for pb.Next() {
				_ = m.WithLock(ctx, key, noop)
			}
		})
	})
}

// BenchmarkSyncMutex is the baseline of BenchmarkWithLock: a plain
// sync.Mutex, the floor of any lock, measured in the same run.
func BenchmarkSyncMutex(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		var mu sync.Mutex
		b.ReportAllocs()
		for b.Loop() {
			mu.Lock()
			//lint:ignore SA2001 the empty section is the point: the cost of the lock alone
			mu.Unlock()
		}
	})
	b.Run("contended-one-key", func(b *testing.B) {
		var mu sync.Mutex
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				//lint:ignore SA2001 the cost of the lock alone
				mu.Unlock()
			}
		})
	})
}
