package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/config"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/throttle"
)

// throttledBody is @nestjs/throttler's 429, byte for byte.
const throttledBody = `{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}`

// defaultThrottle is the service's limits with no variable set, in memory,
// on a clock that stands still: a slow test gets no request back.
func defaultThrottle(t testing.TB) *handlers.Throttle {
	t.Helper()
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &handlers.Throttle{Limiter: throttle.NewMemory(throttle.MemoryOptions{Now: func() time.Time { return now }}),
		LoginIP: cfg.ThrottleLoginIP, LoginAccount: cfg.ThrottleLoginAccount, RegisterIP: cfg.ThrottleRegisterIP}
}

// throttleConfig is the default configuration with limits th, and
// X-Forwarded-For believed from 127.0.0.1, the address of the tests.
func throttleConfig(t testing.TB, th *handlers.Throttle) appConfig {
	t.Helper()
	cfg := defaultConfig()
	cfg.throttle = th
	_, loopback, _ := net.ParseCIDR("127.0.0.1/32")
	cfg.trustedProxies = []*net.IPNet{loopback}
	return cfg
}

func memoryThrottle(loginIP, loginAccount, registerIP int) *handlers.Throttle {
	return &handlers.Throttle{
		Limiter:      throttle.NewMemory(throttle.MemoryOptions{}),
		LoginIP:      throttle.Rate{Limit: loginIP, Period: time.Hour},
		LoginAccount: throttle.Rate{Limit: loginAccount, Period: time.Hour},
		RegisterIP:   throttle.Rate{Limit: registerIP, Period: time.Hour},
	}
}

// login posts credentials, from the client address ip when it is not "".
func (a *app) login(email, password, ip string) (response, error) {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	var header []string
	if ip != "" {
		header = []string{"X-Forwarded-For", ip}
	}
	return a.do(http.MethodPost, "/auth/login", "application/json", bytes.NewReader(b), header...)
}

// wantThrottled checks that r is ThrottlerGuard's 429: the exact body, a
// Retry-After of whole seconds within maxWait, and no X-RateLimit headers
// of the throttler that refused.
func wantThrottled(t testing.TB, r response, suffix string, maxWait int) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests || string(r.Body) != throttledBody {
		t.Fatalf("answer = %s, want 429 %s", r, throttledBody)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	names := []string{"Retry-After"}
	if suffix != "" {
		names = append(names, "Retry-After"+suffix)
	}
	for _, name := range names {
		if s, err := strconv.Atoi(r.Header.Get(name)); err != nil || s < 1 || s > maxWait {
			t.Errorf("%s = %q, want whole seconds in [1, %d]", name, r.Header.Get(name), maxWait)
		}
	}
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if v := r.Header.Get(h + suffix); v != "" {
			t.Errorf("a 429 carries %s%s: %q (ThrottlerGuard sets none on its 429)", h, suffix, v)
		}
	}
}

// TestThrottleGuessingOneAccount is the attacker's view, with the default
// limits: 30 wrong passwords for one account in a row, from one address,
// get 5 × 401, each with the X-RateLimit headers of both throttlers, then
// 429s: from the account's limit, then, past 20 logins, from the address's.
func TestThrottleGuessingOneAccount(t *testing.T) {
	a := newApp(t, throttleConfig(t, defaultThrottle(t)))
	s := a.register(t)
	email := s.User["email"].(string)
	for i := range 30 {
		r, err := a.login(email, fmt.Sprintf("guess-%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		if i >= 20 {
			wantThrottled(t, r, "", 3) // one more login every 60s/20
			continue
		}
		if i >= 5 {
			wantThrottled(t, r, "-account", 12) // one more guess every 60s/5
			continue
		}
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("guess %d = %s, want 401", i+1, r)
		}
		for h, want := range map[string]int{
			"X-RateLimit-Limit": 20, "X-RateLimit-Remaining": 19 - i,
			"X-RateLimit-Limit-account": 5, "X-RateLimit-Remaining-account": 4 - i,
		} {
			if got := r.Header.Get(h); got != strconv.Itoa(want) {
				t.Errorf("guess %d: %s = %q, want %d", i+1, h, got, want)
			}
		}
		for _, h := range []string{"X-RateLimit-Reset", "X-RateLimit-Reset-account"} {
			if s, err := strconv.Atoi(r.Header.Get(h)); err != nil || s < 1 || s > 60 {
				t.Errorf("guess %d: %s = %q, want whole seconds in [1, 60]", i+1, h, r.Header.Get(h))
			}
		}
	}
	// The right password is refused too while the account is limited: the
	// limit does not tell a guess from the owner.
	if r, _ := a.login(email, "password123", ""); r.Status != http.StatusTooManyRequests {
		t.Errorf("the right password while limited = %s, want 429", r)
	}
	for limit, want := range map[string]float64{"account": 15, "ip": 11} {
		if n := a.counter(t, "auth_throttled_total", "route", "login", "limit", limit); n != want {
			t.Errorf("auth_throttled_total{route=login,limit=%s} = %v, want %v", limit, n, want)
		}
	}
}

// TestThrottleLoginPerAddress: one address trying many accounts stops at
// the per-address limit; another address is not affected.
func TestThrottleLoginPerAddress(t *testing.T) {
	a := newApp(t, throttleConfig(t, memoryThrottle(10, 1000, 1000)))
	statuses := map[int]int{}
	for i := range 30 {
		r, err := a.login(fmt.Sprintf("spray%d@example.com", i), "password123", "203.0.113.7")
		if err != nil {
			t.Fatal(err)
		}
		statuses[r.Status]++
		if r.Status == http.StatusTooManyRequests {
			wantThrottled(t, r, "", 3600)
		}
	}
	if statuses[401] != 10 || statuses[429] != 20 {
		t.Errorf("30 logins from one address = %v, want 10 × 401 and 20 × 429", statuses)
	}
	r, _ := a.login("spray0@example.com", "password123", "203.0.113.8")
	if r.Status != http.StatusUnauthorized || r.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Errorf("a login from another address = %s (remaining %q), want 401 with 9 remaining", r, r.Header.Get("X-RateLimit-Remaining"))
	}
	// An IPv6 client is counted by its /64: its neighbours share its count.
	for i := range 10 {
		a.login("v6@example.com", "x", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if r, _ := a.login("v6@example.com", "x", "2001:db8:1:2:ffff::1"); r.Status != http.StatusTooManyRequests {
		t.Errorf("the 11th login from one IPv6 /64 = %s, want 429", r)
	}
	if r, _ := a.login("v6@example.com", "x", "2001:db8:1:3::1"); r.Status != http.StatusUnauthorized {
		t.Errorf("a login from the next /64 = %s, want 401", r)
	}
}

// TestThrottleBotnetOnOneAccount: 200 addresses guessing one account at
// once, in any case of its email, get 5 guesses between them; the other
// accounts they try meanwhile are not affected.
func TestThrottleBotnetOnOneAccount(t *testing.T) {
	a := newApp(t, throttleConfig(t, memoryThrottle(1000, 5, 1000)))
	victim := a.register(t).User["email"].(string)
	const bots = 200
	type result struct {
		r   response
		err error
	}
	results := make(chan result, bots)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range bots {
		wg.Go(func() {
			<-start
			email := victim
			if i%2 == 1 {
				email = strings.ToUpper(victim)
			}
			r, err := a.login(email, fmt.Sprintf("guess-%d", i), fmt.Sprintf("198.51.%d.%d", i/250, i%250+1))
			results <- result{r, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	statuses := map[int]int{}
	for res := range results {
		if res.err != nil {
			t.Fatal(res.err)
		}
		statuses[res.r.Status]++
		if res.r.Status == http.StatusTooManyRequests {
			wantThrottled(t, res.r, "-account", 3600)
		}
	}
	if statuses[401] != 5 || statuses[429] != bots-5 {
		t.Errorf("%d addresses on one account = %v, want 5 × 401 and %d × 429", bots, statuses, bots-5)
	}
	other := a.register(t).User["email"].(string)
	if r, _ := a.login(other, "password123", "198.51.0.1"); r.Status != http.StatusOK {
		t.Errorf("another account from a bot's address = %s, want 200", r)
	}
}

// TestThrottleForwardedForFromUntrustedPeers: without TRUSTED_PROXIES,
// X-Forwarded-For is the client's to write, and ignored; with it, only the
// right-most address that is not a trusted proxy counts.
func TestThrottleForwardedForFromUntrustedPeers(t *testing.T) {
	cfg := throttleConfig(t, memoryThrottle(3, 1000, 1000))
	cfg.trustedProxies = nil
	a := newApp(t, cfg)
	for i := range 3 {
		a.login("x@example.com", "x", fmt.Sprintf("192.0.2.%d", i+1))
	}
	if r, _ := a.login("x@example.com", "x", "192.0.2.99"); r.Status != http.StatusTooManyRequests {
		t.Errorf("a 4th login with yet another X-Forwarded-For, from an untrusted peer = %s, want 429", r)
	}

	b := newApp(t, throttleConfig(t, memoryThrottle(3, 1000, 1000)))
	for i := range 3 { // a client that writes its own X-Forwarded-For each time, behind the proxy
		r, _ := b.login("x@example.com", "x", fmt.Sprintf("10.%d.0.1, 192.0.2.50", i))
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("login %d = %s, want 401", i+1, r)
		}
	}
	if r, _ := b.login("x@example.com", "x", "10.9.9.9, 192.0.2.50"); r.Status != http.StatusTooManyRequests {
		t.Errorf("a 4th login from 192.0.2.50 with a forged left-most entry = %s, want 429", r)
	}
}

// TestThrottleRegisterPerAddress: registrations stop at the per-address
// limit, and the refused one creates no user.
func TestThrottleRegisterPerAddress(t *testing.T) {
	a := newApp(t, throttleConfig(t, memoryThrottle(1000, 1000, 5)))
	post := func(i int) response {
		b, _ := json.Marshal(map[string]string{"email": fmt.Sprintf("reg%d@example.com", i), "password": "password123"})
		r, err := a.do(http.MethodPost, "/auth/register", "application/json", bytes.NewReader(b), "X-Forwarded-For", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 5 {
		if r := post(i); r.Status != http.StatusCreated || r.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(4-i) {
			t.Fatalf("registration %d = %s (remaining %q), want 201 with %d remaining", i+1, r, r.Header.Get("X-RateLimit-Remaining"), 4-i)
		}
	}
	wantThrottled(t, post(5), "", 3600)
	if r, _ := a.login("reg5@example.com", "password123", "192.0.2.2"); r.Status != http.StatusUnauthorized {
		t.Errorf("login as the refused registration = %s, want 401: no such user", r)
	}
}

// TestThrottleNeverLimitsRefresh: with every limit at 1, 200 concurrent
// refreshes from one address all answer 200, and so do logout, me, health
// and metrics, none with X-RateLimit headers.
func TestThrottleNeverLimitsRefresh(t *testing.T) {
	a := newApp(t, throttleConfig(t, memoryThrottle(1, 1, 1)))
	s := a.register(t)
	const n = 200
	results := make(chan response, n)
	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			r, err := a.refresh(s.RefreshToken)
			if err != nil {
				errs <- err
				return
			}
			results <- r
		})
	}
	close(start)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var next string
	for r := range results {
		if r.Status != http.StatusOK || r.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("refresh = %s (X-RateLimit-Limit %q), want 200 without rate-limit headers", r, r.Header.Get("X-RateLimit-Limit"))
		}
		next = newToken(t, r)
	}
	for range 20 { // a chain, too
		next = newToken(t, a.mustRefresh(t, next))
	}
	for _, req := range []struct {
		method, path string
		body         string
		header       []string
		want         int
	}{
		{http.MethodGet, "/auth/me", "", []string{"Authorization", "Bearer " + s.AccessToken}, 200},
		{http.MethodGet, "/health", "", nil, 200},
		{http.MethodGet, "/metrics", "", nil, 200},
		{http.MethodPost, "/auth/logout", `{"refreshToken":"` + next + `"}`, nil, 204},
		{http.MethodPost, "/auth/logout", `{"refreshToken":"` + next + `"}`, nil, 204},
	} {
		for range 3 {
			r, err := a.do(req.method, req.path, "application/json", strings.NewReader(req.body), req.header...)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != req.want || r.Header.Get("X-RateLimit-Limit") != "" {
				t.Errorf("%s %s = %d (X-RateLimit-Limit %q), want %d without rate-limit headers", req.method, req.path, r.Status, r.Header.Get("X-RateLimit-Limit"), req.want)
			}
		}
	}
}

// redisThrottle is limits in Redis under prefix, on client.
func redisThrottle(client *redis.Client, prefix string, loginIP, loginAccount int, onFallback func()) *handlers.Throttle {
	th := memoryThrottle(loginIP, loginAccount, 1000)
	th.Limiter = throttle.NewRedis(client, throttle.RedisOptions{Prefix: prefix, Timeout: 5 * time.Second, OnFallback: onFallback})
	return th
}

// TestThrottleSharedAcrossInstances: two instances whose counts live in one
// Redis share the limit: guesses at one account spread over both get 5 in
// all, and so do an address's logins.
func TestThrottleSharedAcrossInstances(t *testing.T) {
	rc := redisConfig(t, defaultConfig())
	var fallbacks atomic.Int64
	prefix := rc.redisPrefix + "throttle:"
	apps := make([]*app, 2)
	for i := range apps {
		cfg := throttleConfig(t, redisThrottle(rc.redis, prefix, 1000, 5, func() { fallbacks.Add(1) }))
		apps[i] = newApp(t, cfg)
	}
	statuses := map[int]int{}
	for i := range 20 {
		r, err := apps[i%2].login("shared@example.com", "x", fmt.Sprintf("192.0.2.%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		statuses[r.Status]++
	}
	if statuses[401] != 5 || statuses[429] != 15 {
		t.Errorf("20 guesses over two instances = %v, want 5 × 401 and 15 × 429", statuses)
	}

	for i := range apps { // a per-address limit of 3, shared too
		cfg := throttleConfig(t, redisThrottle(rc.redis, prefix+"ip:", 3, 1000, func() { fallbacks.Add(1) }))
		apps[i] = newApp(t, cfg)
	}
	statuses = map[int]int{}
	for i := range 10 {
		r, _ := apps[i%2].login(fmt.Sprintf("a%d@example.com", i), "x", "192.0.2.200")
		statuses[r.Status]++
	}
	if statuses[401] != 3 || statuses[429] != 7 {
		t.Errorf("10 logins from one address over two instances = %v, want 3 × 401 and 7 × 429", statuses)
	}
	if n := fallbacks.Load(); n != 0 {
		t.Errorf("%d decisions made without Redis while it was up", n)
	}
}

// TestThrottleRedisDown: with nothing listening at Redis's address, logins
// are never refused for it: they are limited by the instance alone.
func TestThrottleRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	var fallbacks atomic.Int64
	a := newApp(t, throttleConfig(t, redisThrottle(client, "authsvc-test:", 1000, 5, func() { fallbacks.Add(1) })))
	s := a.register(t)
	email := s.User["email"].(string)
	if r, _ := a.login(email, "password123", "192.0.2.1"); r.Status != http.StatusOK {
		t.Fatalf("login with Redis down = %s, want 200", r)
	}
	statuses := map[int]int{}
	for i := range 10 {
		r, _ := a.login(email, "wrong", fmt.Sprintf("192.0.2.%d", i+2))
		statuses[r.Status]++
	}
	if statuses[401] != 4 || statuses[429] != 6 {
		t.Errorf("10 more guesses with Redis down = %v, want 4 × 401 and 6 × 429 (5 logins in all)", statuses)
	}
	if n := fallbacks.Load(); n != 23 { // a registration, and an address and an account per login
		t.Errorf("%d decisions made locally, want every one (23)", n)
	}
}
