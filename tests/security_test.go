package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
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
