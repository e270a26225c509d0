package mutex_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/mutex"
)

// redisClient connects to TEST_REDIS_URL, or skips the test.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis at TEST_REDIS_URL: %v", err)
	}
	return c
}

// testPrefix keeps each test's keys apart from every other's.
func testPrefix() string { return "authsvc-test:" + rand.Text()[:10] + ":" }

func TestRedis(t *testing.T) {
	c := redisClient(t)
	testLocker(t, func(t *testing.T, timeout time.Duration) locker {
		return mutex.NewRedis(c, mutex.RedisOptions{Timeout: timeout, Prefix: testPrefix()})
	})
}

// TestRedisAcrossProcesses: two lockers on one Redis stand for two
// instances; 2 × 150 goroutines increment a counter that only the lock
// protects.
func TestRedisAcrossProcesses(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	instances := []*mutex.Redis{
		mutex.NewRedis(c, mutex.RedisOptions{Timeout: time.Minute, Prefix: prefix}),
		mutex.NewRedis(c, mutex.RedisOptions{Timeout: time.Minute, Prefix: prefix}),
	}
	var (
		counter int
		inside  atomic.Int32
		overlap atomic.Int32
		start   = make(chan struct{})
		wg      sync.WaitGroup
		errs    = make(chan error, 300)
	)
	for i := range 300 {
		wg.Go(func() {
			<-start
			errs <- instances[i%2].WithLock(t.Context(), "shared", func(context.Context) error {
				if inside.Add(1) != 1 {
					overlap.Add(1)
				}
				v := counter
				time.Sleep(0)
				counter = v + 1
				inside.Add(-1)
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("WithLock = %v", err)
		}
	}
	if counter != 300 || overlap.Load() != 0 {
		t.Errorf("counter = %d with %d overlaps, want 300 and 0", counter, overlap.Load())
	}
	if n, _ := c.Exists(t.Context(), prefix+"shared").Result(); n != 0 {
		t.Error("the key is still in Redis after every holder left")
	}
}

// A holder that dies without releasing loses the lock when its lease ends.
func TestRedisDeadHolder(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	if err := c.Set(t.Context(), prefix+"k", "crashed-process", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	l := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 10 * time.Second, Prefix: prefix})
	ran := false
	if err := l.WithLock(t.Context(), "k", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("WithLock after the dead holder's lease = %v, ran %v; want nil, true", err, ran)
	}
}

// The lease is renewed while fn runs: a holder that outlives its lease keeps
// the lock, and another process times out waiting for it.
func TestRedisLeaseRenewed(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	holder := mutex.NewRedis(c, mutex.RedisOptions{Lease: 600 * time.Millisecond, Prefix: prefix})
	other := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 2 * time.Second, Prefix: prefix}) // > 3 leases
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- holder.WithLock(t.Context(), "k", func(ctx context.Context) error {
			close(held)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	}()
	<-held
	if err := other.WithLock(t.Context(), "k", noop); !errors.Is(err, mutex.ErrLockTimeout) {
		t.Errorf("other process's WithLock while the lease is renewed = %v, want ErrLockTimeout", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("holder = %v", err)
	}
}

// When the lock is taken away (the key deleted under the holder, as a long
// Redis outage would), the holder's context is cancelled.
func TestRedisLeaseLost(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix()
	l := mutex.NewRedis(c, mutex.RedisOptions{Lease: 300 * time.Millisecond, Prefix: prefix})
	err := l.WithLock(t.Context(), "k", func(ctx context.Context) error {
		if err := c.Del(t.Context(), prefix+"k").Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(10 * time.Second):
			return errors.New("fn's context was not cancelled after the lease was lost")
		}
	})
	if err == nil {
		t.Fatal("WithLock = nil, want the lost lease")
	}
	if got := err.Error(); got != `mutex: lease on "`+prefix+`k" lost` {
		t.Errorf("fn saw %q, want the lost lease", got)
	}
}

// An unreachable Redis is ErrUnavailable, and fn does not run.
func TestRedisUnavailable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	l := mutex.NewRedis(c, mutex.RedisOptions{Timeout: 5 * time.Second})
	ran := false
	err := l.WithLock(t.Context(), "k", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, mutex.ErrUnavailable) || ran {
		t.Errorf("WithLock with Redis down = %v, ran %v; want ErrUnavailable, false", err, ran)
	}
	if l.IsLocked("k") || l.ActiveLockCount() != 0 {
		t.Error("a failed acquisition left the key held locally")
	}
	if err := l.Ping(t.Context()); !errors.Is(err, mutex.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
}
