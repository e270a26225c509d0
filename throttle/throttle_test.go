package throttle

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"5/1m":   {5, time.Minute},
		" 20/1m": {20, time.Minute},
		"1/1h":   {1, time.Hour},
		"10/30s": {10, 30 * time.Second},
	} {
		got, err := ParseRate(in, time.ParseDuration)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "0/1m", "-1/1m", "x/1m", "5/", "5/0s", "5/-1m", "5/soon"} {
		if r, err := ParseRate(in, time.ParseDuration); !errors.Is(err, ErrBadRate) {
			t.Errorf("ParseRate(%q) = %v, %v; want ErrBadRate", in, r, err)
		}
	}
}

// TestMemoryBurstThenRefill: Limit requests at once, then one per
// Period/Limit, with Remaining, RetryAfter and ResetAfter to match.
func TestMemoryBurstThenRefill(t *testing.T) {
	clk := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clk.Now})
	rate := Rate{Limit: 5, Period: time.Minute}
	for i := range 5 {
		r := m.Allow(t.Context(), "k", rate)
		want := Result{Allowed: true, Limit: 5, Remaining: 4 - i, ResetAfter: time.Duration(i+1) * 12 * time.Second}
		if r != want {
			t.Fatalf("request %d = %+v, want %+v", i+1, r, want)
		}
	}
	r := m.Allow(t.Context(), "k", rate)
	if want := (Result{Limit: 5, RetryAfter: 12 * time.Second, ResetAfter: time.Minute}); r != want {
		t.Fatalf("request 6 = %+v, want %+v", r, want)
	}
	if r := m.Allow(t.Context(), "other", rate); !r.Allowed || r.Remaining != 4 {
		t.Errorf("another key = %+v, want allowed with 4 remaining", r)
	}
	clk.Advance(11 * time.Second)
	if r := m.Allow(t.Context(), "k", rate); r.Allowed || r.RetryAfter != time.Second {
		t.Errorf("after 11s = %+v, want refused, retry after 1s", r)
	}
	clk.Advance(time.Second)
	if r := m.Allow(t.Context(), "k", rate); !r.Allowed || r.Remaining != 0 {
		t.Errorf("after 12s = %+v, want one allowed, none remaining", r)
	}
	clk.Advance(time.Minute)
	if r := m.Allow(t.Context(), "k", rate); !r.Allowed || r.Remaining != 4 {
		t.Errorf("after a quiet minute = %+v, want the whole limit back", r)
	}
}

// TestMemoryConcurrentExact: hundreds of goroutines on one key get exactly
// the limit between them.
func TestMemoryConcurrentExact(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	rate := Rate{Limit: 100, Period: time.Hour}
	var allowed atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			<-start
			if m.Allow(t.Context(), "one", rate).Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 100 {
		t.Errorf("%d allowed, want 100", n)
	}
}

// TestMemoryBounded: a flood of distinct keys never holds more than MaxKeys,
// and does not free a key under attack, which stays refused.
func TestMemoryBounded(t *testing.T) {
	clk := newFakeClock()
	m := NewMemory(MemoryOptions{MaxKeys: 1024, Now: clk.Now})
	rate := Rate{Limit: 5, Period: time.Minute}
	for range 5 {
		m.Allow(t.Context(), "victim", rate)
	}
	for i := range 200_000 {
		m.Allow(t.Context(), "ip-"+strconv.Itoa(i), rate)
		if i%1000 == 0 {
			clk.Advance(time.Millisecond)
			if r := m.Allow(t.Context(), "victim", rate); r.Allowed {
				t.Fatalf("the victim's key was let through after %d other keys: it was evicted", i)
			}
		}
	}
	if n := m.Len(); n > 1024 {
		t.Errorf("%d keys held, want at most 1024", n)
	}
	// Keys back to their whole limit are the first to go.
	clk.Advance(time.Hour)
	m.Allow(t.Context(), "fresh", rate)
	for i := range 2000 {
		m.Allow(t.Context(), "later-"+strconv.Itoa(i), rate)
	}
	if n := m.Len(); n > 1024 {
		t.Errorf("%d keys held, want at most 1024", n)
	}
}

// redisClient returns a new client of TEST_REDIS_URL, or skips.
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
	return c
}

// testPrefix is a Redis key prefix of one test's own.
func testPrefix() string { return "authsvc-test:throttle:" + strings.ToLower(rand.Text()[:10]) + ":" }

// TestRedisShared: two limiters on two clients, as two instances would
// have, share one limit: hundreds of concurrent requests over both get
// exactly the limit.
func TestRedisShared(t *testing.T) {
	c1, c2, prefix := redisClient(t), redisClient(t), testPrefix()
	var fallbacks atomic.Int64
	opts := RedisOptions{Prefix: prefix, Timeout: 5 * time.Second, OnFallback: func() { fallbacks.Add(1) }}
	limiters := []*Redis{NewRedis(c1, opts), NewRedis(c2, opts)}
	rate := Rate{Limit: 10, Period: time.Hour}
	var allowed atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			<-start
			if limiters[i%2].Allow(t.Context(), "shared", rate).Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Errorf("%d allowed over two instances, want 10", n)
	}
	if n := fallbacks.Load(); n != 0 {
		t.Errorf("%d decisions made locally with Redis up", n)
	}
	r := limiters[0].Allow(t.Context(), "shared", rate)
	if r.Allowed || r.Limit != 10 || r.RetryAfter <= 0 || r.RetryAfter > 6*time.Minute || r.ResetAfter < 59*time.Minute {
		t.Errorf("past the limit = %+v, want refused, retry within 6m, reset in about 1h", r)
	}
	if r := limiters[1].Allow(t.Context(), "other", rate); !r.Allowed || r.Remaining != 9 {
		t.Errorf("another key = %+v, want allowed with 9 remaining", r)
	}
}

// TestRedisDownLimitsLocally: with nothing listening at Redis's address,
// every request is still decided, by the local limiter, at its limit; the
// outage is reported once.
func TestRedisDownLimitsLocally(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	var fallbacks, outages atomic.Int64
	r := NewRedis(client, RedisOptions{
		OnFallback:    func() { fallbacks.Add(1) },
		OnStateChange: func(err error) { outages.Add(1) },
	})
	rate := Rate{Limit: 5, Period: time.Hour}
	var allowed atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			<-start
			if r.Allow(t.Context(), "k", rate).Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 5 {
		t.Errorf("%d allowed with Redis down, want 5 (the local limit)", n)
	}
	if n := fallbacks.Load(); n != 200 {
		t.Errorf("%d decisions made locally, want 200", n)
	}
	if n := outages.Load(); n != 1 {
		t.Errorf("the outage was reported %d times, want once", n)
	}
}

// TestRedisBackAfterOutage: once Redis answers again, the counts are in
// Redis again and the recovery is reported.
func TestRedisBackAfterOutage(t *testing.T) {
	good, prefix := redisClient(t), testPrefix()
	var broken atomic.Bool
	broken.Store(true)
	opts := redis.Options{Addr: good.Options().Addr, DB: good.Options().DB, MaxRetries: -1, DialerRetries: 1}
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if broken.Load() {
			return nil, errors.New("test: redis is down")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	client := redis.NewClient(&opts)
	t.Cleanup(func() { client.Close() })
	var states []error
	var mu sync.Mutex
	r := NewRedis(client, RedisOptions{Prefix: prefix, Cooldown: time.Nanosecond, Timeout: 5 * time.Second, OnStateChange: func(err error) {
		mu.Lock()
		states = append(states, err)
		mu.Unlock()
	}})
	rate := Rate{Limit: 3, Period: time.Hour}
	if res := r.Allow(t.Context(), "k", rate); !res.Allowed {
		t.Fatalf("first request with Redis down = %+v, want allowed", res)
	}
	broken.Store(false)
	for i := range 3 { // the local count does not follow into Redis
		if res := r.Allow(t.Context(), "k", rate); !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("request %d with Redis back = %+v, want allowed, %d remaining", i+1, res, 2-i)
		}
	}
	if res := r.Allow(t.Context(), "k", rate); res.Allowed {
		t.Errorf("past the limit in Redis = %+v, want refused", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) != 2 || states[0] == nil || states[1] != nil {
		t.Errorf("state changes = %v, want [an error, nil]", states)
	}
}
