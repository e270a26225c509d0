package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestHealth(t *testing.T) {
	a := newApp(t, defaultConfig())
	r, err := a.do(http.MethodGet, "/health", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	const up = `{"status":"ok","info":{"database":{"status":"up"}},"error":{},"details":{"database":{"status":"up"}}}`
	if r.Status != http.StatusOK || string(r.Body) != up {
		t.Errorf("/health = %s, want 200 %s", r, up)
	}

	a.DB.Close() // the database goes away
	r, err = a.do(http.MethodGet, "/health", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	const down = `{"status":"error","info":{},"error":{"database":{"message":"database is not answering","status":"down"}},"details":{"database":{"message":"database is not answering","status":"down"}}}`
	if r.Status != http.StatusServiceUnavailable || string(r.Body) != down {
		t.Errorf("/health with the database gone = %s, want 503 %s", r, down)
	}

	// Other endpoints answer a bare 500 that tells nothing of the driver.
	r = a.mustPost(t, "/auth/login", map[string]string{"email": "a@example.com", "password": "password123"})
	if r.Status != http.StatusInternalServerError || string(r.Body) != `{"statusCode":500,"message":"Internal server error"}` {
		t.Errorf("login with the database gone = %s, want the bare 500", r)
	}
	if !strings.Contains(a.Logs.String(), "level=ERROR") {
		t.Error("the 500 was not logged")
	}
}

// TestMixedLoad runs whole sessions — register, login, a chain of refreshes,
// logout — from 100 clients at once against SQLite, and expects every answer
// to be the right one: no "database is locked", no 5xx.
func TestMixedLoad(t *testing.T) {
	a := newApp(t, defaultConfig())
	const clients, chain = 100, 5
	start := make(chan struct{})
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			errs <- runSession(a, i, chain)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	logs := a.Logs.String()
	for _, bad := range []string{"database is locked", "SQLITE_BUSY", "level=ERROR"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the logs contain %q", bad)
		}
	}
}

func runSession(a *app, i, chain int) error {
	email := fmt.Sprintf("load%d@example.com", i)
	creds := map[string]string{"email": email, "password": "password123"}
	r, err := a.postJSON("/auth/register", creds)
	if err != nil || r.Status != http.StatusCreated {
		return fmt.Errorf("client %d: register = %v %v", i, r, err)
	}
	r, err = a.postJSON("/auth/login", creds)
	if err != nil || r.Status != http.StatusOK {
		return fmt.Errorf("client %d: login = %v %v", i, r, err)
	}
	var body struct{ RefreshToken string }
	if err := jsonUnmarshal(r.Body, &body); err != nil {
		return err
	}
	tok := body.RefreshToken
	for n := range chain {
		r, err = a.refresh(tok)
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("client %d: refresh %d = %v %v", i, n, r, err)
		}
		if err := jsonUnmarshal(r.Body, &body); err != nil {
			return err
		}
		tok = body.RefreshToken
	}
	r, err = a.postJSON("/auth/logout", map[string]string{"refreshToken": tok})
	if err != nil || r.Status != http.StatusNoContent {
		return fmt.Errorf("client %d: logout = %v %v", i, r, err)
	}
	r, err = a.refresh(tok)
	if err != nil || r.Status != http.StatusUnauthorized {
		return fmt.Errorf("client %d: refresh after logout = %v %v", i, r, err)
	}
	return nil
}

// TestCommitMetrics: every refresh's commit shows on /metrics, its size and
// its duration (a slow fsync shows there, not as unexplained latency).
func TestCommitMetrics(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)
		s := a.register(t)
		a.mustRefresh(t, s.RefreshToken)
		r, err := a.do(http.MethodGet, "/metrics", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"auth_db_commit_seconds", "auth_group_commit_size"} {
			if !regexp.MustCompile(`(?m)^` + name + `_count [1-9]`).Match(r.Body) {
				t.Errorf("/metrics after a refresh has no %s_count above 0:\n%s", name, r.Body)
			}
		}
		if !bytes.Contains(r.Body, []byte(`auth_db_commit_seconds_bucket{le="1"}`)) {
			t.Error("auth_db_commit_seconds has no bucket at 1 s")
		}
	})
}
