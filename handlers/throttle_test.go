package handlers

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/authsvc/throttle"
)

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"::ffff:203.0.113.7":   "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
		"2001:DB8:1:2::9%eth0": "2001:db8:1:2::/64",
		"::1":                  "::1",
		"not an address":       "not an address",
		"":                     "",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientIPs(t *testing.T) {
	var trusted []*net.IPNet
	for _, c := range []string{"10.0.0.0/8", "127.0.0.1/32"} {
		_, n, _ := net.ParseCIDR(c)
		trusted = append(trusted, n)
	}
	for _, tc := range []struct {
		name    string
		trusted []*net.IPNet
		remote  string
		xff     string
		want    string
	}{
		{"no proxies: the socket", nil, "127.0.0.1:5000", "192.0.2.1", "127.0.0.1"},
		{"no proxies: private peers are not trusted either", nil, "10.1.1.1:5000", "192.0.2.1", "10.1.1.1"},
		{"untrusted peer: its header is ignored", trusted, "198.51.100.1:5000", "192.0.2.1", "198.51.100.1"},
		{"trusted peer", trusted, "127.0.0.1:5000", "192.0.2.1", "192.0.2.1"},
		{"the right-most untrusted entry", trusted, "127.0.0.1:5000", "6.6.6.6, 192.0.2.1, 10.0.0.5", "192.0.2.1"},
		{"a private address not in the list is a client", trusted, "127.0.0.1:5000", "192.0.2.1, 192.168.1.1", "192.168.1.1"},
		{"trusted peer, no header", trusted, "127.0.0.1:5000", "", "127.0.0.1"},
		{"IPv6 in brackets", trusted, "127.0.0.1:5000", "[2001:db8::1]", "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/auth/login", nil)
			req.RemoteAddr = tc.remote
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := clientIPs(tc.trusted)(req); got != tc.want {
				t.Errorf("client address = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 12 * time.Second: 12} {
		if got := ceilSeconds(d); got != want {
			t.Errorf("ceilSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

type noLocks struct{}

func (noLocks) ActiveLockCount() int { return 0 }

// TestThrottleHeaderNames: the headers go out spelled as Express writes
// them, and the 429 body is ThrottlerException's. The auth service is not
// needed: the address's limit is checked before the body is validated.
func TestThrottleHeaderNames(t *testing.T) {
	e := NewServer(Deps{Locks: noLocks{}, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
		Throttle: &Throttle{Limiter: throttle.NewMemory(throttle.MemoryOptions{}), RegisterIP: throttle.Rate{Limit: 1, Period: time.Minute}}})
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/auth/register", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	rec := post()
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("an invalid registration = %d %s, want 400", rec.Code, rec.Body)
	}
	for name, want := range map[string]string{"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60"} {
		if got := rec.Header()[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want [%s]", name, got, want)
		}
	}
	rec = post()
	if rec.Code != http.StatusTooManyRequests || rec.Body.String() != `{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}` {
		t.Errorf("past the limit = %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header()["Retry-After"]; len(got) != 1 || (got[0] != "60" && got[0] != "59") {
		t.Errorf("Retry-After = %q, want [60] (or 59 on a slow machine)", got)
	}
}
