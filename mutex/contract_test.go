package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/authsvc/mutex"
)

// locker is what every implementation in this package offers.
type locker interface {
	WithLock(ctx context.Context, key string, fn func(context.Context) error) error
	ActiveLockCount() int
	IsLocked(key string) bool
}

func noop(context.Context) error { return nil }

func TestMemory(t *testing.T) {
	testLocker(t, func(t *testing.T, timeout time.Duration) locker {
		return mutex.NewMemory(mutex.MemoryOptions{Timeout: timeout})
	})
}

// The zero value of Memory is a lock whose waits only ctx bounds, and it
// meets the whole contract.
func TestMemoryZeroValue(t *testing.T) {
	testLocker(t, func(*testing.T, time.Duration) locker { return new(mutex.Memory) })
}

// testLocker is the contract every keyed lock must meet. newLocker returns a
// fresh lock whose waits are bounded by timeout.
func testLocker(t *testing.T, newLocker func(t *testing.T, timeout time.Duration) locker) {
	t.Run("mutual exclusion per key", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		const goroutines, rounds = 300, 5
		var (
			counter  int // unsynchronized on purpose: only the lock protects it
			inside   atomic.Int32
			overlaps atomic.Int32
			start    = make(chan struct{})
			wg       sync.WaitGroup
			errs     = make(chan error, goroutines)
		)
		for range goroutines {
			wg.Go(func() {
				<-start
				for range rounds {
					err := l.WithLock(t.Context(), "counter", func(context.Context) error {
						if inside.Add(1) != 1 {
							overlaps.Add(1)
						}
						v := counter
						time.Sleep(0) // let another goroutine in if the lock does not hold
						counter = v + 1
						inside.Add(-1)
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("WithLock = %v, want nil", err)
		}
		if counter != goroutines*rounds {
			t.Errorf("counter = %d, want %d", counter, goroutines*rounds)
		}
		if n := overlaps.Load(); n != 0 {
			t.Errorf("%d times two holders were inside at once", n)
		}
		if n := l.ActiveLockCount(); n != 0 {
			t.Errorf("ActiveLockCount after all returned = %d, want 0", n)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		held, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- l.WithLock(t.Context(), "a", func(context.Context) error { close(held); <-release; return nil })
		}()
		<-held
		// 200 other keys go through while "a" is held; a lock shared across
		// keys would block the first of them forever (bounded by the timeout).
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := range 200 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				errs <- l.WithLock(ctx, fmt.Sprintf("b%d", i), noop)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("WithLock on another key while a is held = %v, want nil", err)
			}
		}
		if !l.IsLocked("a") {
			t.Error(`IsLocked("a") while held = false, want true`)
		}
		close(release)
		if err := <-done; err != nil {
			t.Errorf("WithLock(a) = %v", err)
		}
	})

	t.Run("locked state during and after", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		err := l.WithLock(t.Context(), "k", func(context.Context) error {
			if !l.IsLocked("k") {
				t.Error(`IsLocked("k") inside fn = false, want true`)
			}
			if l.IsLocked("other") {
				t.Error(`IsLocked("other") = true, want false`)
			}
			if n := l.ActiveLockCount(); n != 1 {
				t.Errorf("ActiveLockCount inside fn = %d, want 1", n)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("WithLock = %v", err)
		}
		if l.IsLocked("k") || l.ActiveLockCount() != 0 {
			t.Errorf("after return: IsLocked = %v, ActiveLockCount = %d; want false, 0", l.IsLocked("k"), l.ActiveLockCount())
		}
	})

	t.Run("released on error", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		boom := errors.New("boom")
		if err := l.WithLock(t.Context(), "k", func(context.Context) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("WithLock = %v, want fn's error", err)
		}
		if l.IsLocked("k") {
			t.Fatal("lock still held after fn returned an error")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := l.WithLock(ctx, "k", noop); err != nil {
			t.Fatalf("WithLock after an error = %v, want nil", err)
		}
	})

	t.Run("released on panic", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want the panic of fn to propagate", r)
				}
			}()
			_ = l.WithLock(t.Context(), "k", func(context.Context) error { panic("boom") })
		}()
		if l.IsLocked("k") || l.ActiveLockCount() != 0 {
			t.Fatal("lock still held after fn panicked")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := l.WithLock(ctx, "k", noop); err != nil {
			t.Fatalf("WithLock after a panic = %v, want nil", err)
		}
	})

	t.Run("context cancelled while waiting", func(t *testing.T) {
		l := newLocker(t, time.Minute)
		held, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- l.WithLock(t.Context(), "k", func(context.Context) error { close(held); <-release; return nil })
		}()
		<-held

		// 100 waiters give up; none may leave a trace behind.
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		var ran atomic.Int32
		errs := make(chan error, 100)
		for range 100 {
			wg.Go(func() {
				errs <- l.WithLock(ctx, "k", func(context.Context) error { ran.Add(1); return nil })
			})
		}
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, mutex.ErrLockTimeout) || !errors.Is(err, context.Canceled) {
				t.Errorf("WithLock with a cancelled ctx = %v, want ErrLockTimeout and context.Canceled", err)
			}
		}
		if ran.Load() != 0 {
			t.Errorf("fn ran %d times for waiters that gave up", ran.Load())
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("holder's WithLock = %v", err)
		}
		if l.IsLocked("k") || l.ActiveLockCount() != 0 {
			t.Fatalf("after the holder left: IsLocked = %v, ActiveLockCount = %d; want false, 0", l.IsLocked("k"), l.ActiveLockCount())
		}
		ctx2, cancel2 := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel2()
		if err := l.WithLock(ctx2, "k", noop); err != nil {
			t.Fatalf("WithLock after abandoned waiters = %v, want nil", err)
		}
	})
}

// Like sync.Mutex, a free Memory lock is taken even with a done context;
// only waiting is bounded by ctx. (A Redis lock needs a live context to ask.)
func TestMemoryDoneContextFreeKey(t *testing.T) {
	l := mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	if err := l.WithLock(ctx, "k", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("WithLock(cancelled ctx, free key) = %v, ran = %v; want nil, true", err, ran)
	}
}

func TestMemoryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		timeout   time.Duration // the lock's own bound
		ctxWait   time.Duration // the caller's bound
		wantAfter time.Duration
	}{
		{name: "lock timeout", timeout: 5 * time.Second, ctxWait: time.Hour, wantAfter: 5 * time.Second},
		{name: "context deadline", timeout: time.Hour, ctxWait: time.Second, wantAfter: time.Second},
		{name: "no lock timeout", timeout: 0, ctxWait: 3 * time.Second, wantAfter: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := mutex.NewMemory(mutex.MemoryOptions{Timeout: tc.timeout})
				held, release := make(chan struct{}), make(chan struct{})
				go m.WithLock(t.Context(), "k", func(context.Context) error { close(held); <-release; return nil })
				<-held

				ctx, cancel := context.WithTimeout(t.Context(), tc.ctxWait)
				defer cancel()
				start := time.Now()
				err := m.WithLock(ctx, "k", noop)
				if !errors.Is(err, mutex.ErrLockTimeout) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("second WithLock = %v, want ErrLockTimeout and DeadlineExceeded", err)
				}
				if waited := time.Since(start); waited != tc.wantAfter {
					t.Errorf("gave up after %v, want %v", waited, tc.wantAfter)
				}
				close(release)
				synctest.Wait()
				if m.ActiveLockCount() != 0 {
					t.Errorf("ActiveLockCount = %d after all left, want 0", m.ActiveLockCount())
				}
			})
		})
	}
}

// A waiter that is handed the lock in the same instant as it gives up must
// pass the lock on, or the next waiter would wait forever.
func TestMemoryHandOffToDepartingWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m mutex.Memory // no timeout: only ctx bounds a wait
		for range 100 {
			held, release := make(chan struct{}), make(chan struct{})
			go m.WithLock(t.Context(), "k", func(context.Context) error { close(held); <-release; return nil })
			<-held
			ctx, cancel := context.WithCancel(t.Context())
			first := make(chan error, 1)
			go func() { first <- m.WithLock(ctx, "k", noop) }()
			synctest.Wait() // the first waiter is queued
			second := make(chan error, 1)
			go func() { second <- m.WithLock(t.Context(), "k", noop) }()
			synctest.Wait()
			close(release) // hand-off to the first waiter ...
			cancel()       // ... racing with its departure
			<-first        // either outcome is fine for the first waiter
			if err := <-second; err != nil {
				t.Fatalf("second waiter = %v, want nil", err)
			}
			if m.ActiveLockCount() != 0 {
				t.Fatalf("ActiveLockCount = %d, want 0", m.ActiveLockCount())
			}
		}
	})
}

func ExampleMemory_WithLock() {
	locks := mutex.NewMemory(mutex.MemoryOptions{Timeout: 5 * time.Second})
	err := locks.WithLock(context.Background(), "user_operation_42", func(ctx context.Context) error {
		fmt.Println("held:", locks.IsLocked("user_operation_42"))
		return nil
	})
	fmt.Println("err:", err, "held after:", locks.IsLocked("user_operation_42"))
	// Output:
	// held: true
	// err: <nil> held after: false
}

// A waiter's fn learns that it waited for another holder; a holder that found
// the key free does not.
func TestMemoryContended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Minute})
		held, release := make(chan struct{}), make(chan struct{})
		first := make(chan bool, 1)
		go m.WithLock(t.Context(), "k", func(ctx context.Context) error {
			first <- mutex.Contended(ctx)
			close(held)
			<-release
			return nil
		})
		<-held
		second := make(chan bool, 1)
		go m.WithLock(t.Context(), "k", func(ctx context.Context) error { second <- mutex.Contended(ctx); return nil })
		synctest.Wait() // the second caller is queued
		close(release)
		if <-first || !<-second {
			t.Error("Contended: want false for the first holder and true for the one that waited")
		}
	})
}
