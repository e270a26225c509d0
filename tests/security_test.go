package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/handlers"
)

// Every answer that carries a token or a user tells caches not to keep it
// (RFC 6749 section 5.1); errors carry neither and need not.
func TestTokenAnswersAreNotCached(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	email := "nostore@example.com"
	reg := a.mustPost(t, "/auth/register", map[string]any{"email": email, "password": "password123"})
	login := a.mustPost(t, "/auth/login", map[string]any{"email": email, "password": "password123"})
	refresh := a.mustRefresh(t, login.json(t)["refreshToken"].(string))
	me, err := a.do(http.MethodGet, "/auth/me", "", nil, "Authorization", "Bearer "+login.json(t)["accessToken"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]response{"register": reg, "login": login, "refresh": refresh, "me": me} {
		if r.Status >= 300 {
			t.Errorf("%s = %s", name, r)
		}
		if cc, p := r.Header.Get("Cache-Control"), r.Header.Get("Pragma"); cc != "no-store" || p != "no-cache" {
			t.Errorf("%s: Cache-Control %q, Pragma %q; want no-store, no-cache", name, cc, p)
		}
	}
}

// The request metric's labels come from fixed sets: methods and paths that
// a client invents do not each grow /metrics by a series.
func TestMetricLabelsAreBounded(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	for i := range 50 {
		if _, err := a.do(fmt.Sprintf("INVENT%d", i), fmt.Sprintf("/made-up/%d", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	r, err := a.do(http.MethodGet, "/metrics", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var series int
	for _, line := range bytes.Split(r.Body, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("http_request_duration_seconds_count{")) {
			series++
			if bytes.Contains(line, []byte("INVENT")) || bytes.Contains(line, []byte("made-up")) {
				t.Errorf("a label taken from the request: %s", line)
			}
		}
	}
	if series > 3 {
		t.Errorf("%d request series after 50 invented requests, want a handful:\n%s", series, grepLines(r.Body, "http_request_duration_seconds_count"))
	}
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A client that gives up before the answer is logged as 499 below the error
// level and counted as 499, not as a 5xx: an alert on the 5xx rate must not
// fire on client timeouts. Here a login waits for a turn to hash (one
// password check at a time, held), and its client goes away.
func TestClientGoneIs499(t *testing.T) {
	gate := newGateHasher()
	cfg := defaultConfig()
	cfg.hasher = gate
	cfg.hashing = auth.HashingConfig{Concurrency: 1, Queue: 4, Wait: time.Minute}
	a := newApp(t, cfg)
	s := a.register(t)
	email := s.User["email"].(string)
	t.Cleanup(func() {
		select {
		case <-gate.open:
		default:
			close(gate.open)
		}
	})

	held := make(chan error, 1)
	go func() { _, err := a.login(email, "password123", ""); held <- err }()
	<-gate.entered // the one turn to hash is taken

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/auth/login", strings.NewReader(`{"email":"`+email+`","password":"password123"}`))
	req.Header.Set("Content-Type", "application/json")
	gone := make(chan error, 1)
	go func() { _, err := a.client.Do(req); gone <- err }()
	waiting := time.Now().Add(10 * time.Second)
	for a.gauge(t, "auth_password_hashes_waiting") < 1 {
		if time.Now().After(waiting) {
			t.Fatal("the second login never queued for its turn")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-gone; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	close(gate.open)
	if err := <-held; err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.Logs.String(), "status=499") {
		if time.Now().After(deadline) {
			t.Fatalf("no request line with status 499 in:\n%s", a.Logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, line := range strings.Split(a.Logs.String(), "\n") {
		if strings.Contains(line, "status=499") && (!strings.Contains(line, "level=INFO") || !strings.Contains(line, "route=/auth/login")) {
			t.Errorf("the 499 line is %q, want level INFO and the route", line)
		}
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("a client that went away was logged as an error: %q", line)
		}
	}
	r, err := a.do(http.MethodGet, "/metrics", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(r.Body, []byte(`route="/auth/login",status="499"`)) || bytes.Contains(r.Body, []byte(`status="500"`)) {
		t.Errorf("/metrics: want a 499 for /auth/login and no 500:\n%s", grepLines(r.Body, "http_request_duration_seconds_count"))
	}
}

// CORS is off by default, as in a NestJS app without enableCors: a preflight
// is an unknown route. Configured, preflights and answers carry what the
// cors package behind enableCors sends.
func TestCORS(t *testing.T) {
	t.Parallel()
	preflight := func(a *app, origin string) response {
		t.Helper()
		r, err := a.do(http.MethodOptions, "/auth/login", "", nil,
			"Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,authorization")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	off := newApp(t, defaultConfig())
	if r := preflight(off, "https://app.example.com"); r.Status != http.StatusNotFound || r.Header.Get("Access-Control-Allow-Origin") != "" ||
		!strings.Contains(string(r.Body), "Cannot OPTIONS /auth/login") {
		t.Errorf("preflight with CORS off = %s %v, want NestJS's 404 and no CORS headers", r, r.Header)
	}

	cfg := defaultConfig()
	cfg.cors = handlers.CORS{Origins: []string{"https://app.example.com"}, Credentials: true}
	on := newApp(t, cfg)
	r := preflight(on, "https://app.example.com")
	if r.Status != http.StatusNoContent {
		t.Errorf("preflight = %s, want 204", r)
	}
	for h, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET,HEAD,PUT,PATCH,POST,DELETE",
		"Access-Control-Allow-Headers":     "content-type,authorization",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("preflight %s = %q, want %q", h, got, want)
		}
	}
	if r := preflight(on, "https://evil.example.com"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an origin not allowed got Access-Control-Allow-Origin %q", r.Header.Get("Access-Control-Allow-Origin"))
	}
	login, err := on.do(http.MethodPost, "/auth/login", "application/json", strings.NewReader(`{"email":"x@example.com","password":"password123"}`), "Origin", "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := login.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("a cross-origin login's Access-Control-Allow-Origin = %q", got)
	}
}

// Every answer carries helmet's headers; Strict-Transport-Security only
// when the service is told a TLS proxy is in front.
func TestHelmetHeaders(t *testing.T) {
	t.Parallel()
	for _, tls := range []bool{false, true} {
		cfg := defaultConfig()
		cfg.behindTLS = tls
		a := newApp(t, cfg)
		for _, path := range []string{"/health", "/nope", "/api"} {
			r, err := a.do(http.MethodGet, path, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			for h, want := range map[string]string{
				"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "no-referrer",
				"X-DNS-Prefetch-Control": "off", "X-Permitted-Cross-Domain-Policies": "none", "Cross-Origin-Opener-Policy": "same-origin",
				"Cross-Origin-Resource-Policy": "same-origin", "X-XSS-Protection": "0", "X-Download-Options": "noopen",
			} {
				if got := r.Header.Get(h); got != want {
					t.Errorf("GET %s (behind TLS %v): %s = %q, want %q", path, tls, h, got, want)
				}
			}
			if hsts := r.Header.Get("Strict-Transport-Security"); (hsts != "") != tls {
				t.Errorf("GET %s (behind TLS %v): Strict-Transport-Security %q", path, tls, hsts)
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "upgrade-insecure-requests") != tls {
				t.Errorf("GET %s (behind TLS %v): Content-Security-Policy %q", path, tls, csp)
			}
		}
	}
}

// The documentation page runs under helmet's Content-Security-Policy: its
// own inline scripts are allowed by their hashes, and nothing else inline.
func TestDocsPageCSPAllowsItsScripts(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	r, err := a.do(http.MethodGet, "/api", "", nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET /api = %v, %v", r, err)
	}
	csp := r.Header.Get("Content-Security-Policy")
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllSubmatch(r.Body, -1)
	if len(scripts) == 0 {
		t.Fatal("the page has no inline script: this test checks nothing")
	}
	for _, m := range scripts {
		sum := sha256.Sum256(m[1])
		if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, h) {
			t.Errorf("the page's Content-Security-Policy %q does not allow its inline script %s", csp, h)
		}
	}
	if strings.Contains(csp, "unsafe-inline'") && strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("scripts allowed inline wholesale: %q", csp)
	}
}
