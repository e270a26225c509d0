package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRun runs the service as main does, on a free port and a fresh
// database, and returns its base URL, its log and a stop function that
// returns run's error.
func startRun(t *testing.T, env map[string]string) (string, *lockedBuffer, func() error) {
	t.Helper()
	base := map[string]string{"PORT": "0", "DATABASE_URL": filepath.Join(t.TempDir(), "auth.db")}
	for k, v := range env {
		base[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return base[k] }, out, ready) }()
	select {
	case addr := <-ready:
		_, port, _ := net.SplitHostPort(addr.String())
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		return "http://127.0.0.1:" + port, out, stop
	case err := <-done:
		cancel()
		t.Fatalf("run = %v before listening\n%s", err, out.String())
	}
	return "", nil, nil
}

func post(t *testing.T, url string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	res, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if res.StatusCode >= 300 || json.Unmarshal(raw, &m) != nil {
		t.Fatalf("POST %s = %d %s", url, res.StatusCode, raw)
	}
	return m
}

// TestRunServesAndShutsDown starts the service as `go run .` does, uses it,
// and stops it as SIGTERM would: run returns nil and the port is closed.
func TestRunServesAndShutsDown(t *testing.T) {
	url, logs, stop := startRun(t, nil)
	password := "s3cret-password"
	reg := post(t, url+"/auth/register", map[string]string{"email": "run@example.com", "password": password})
	refreshed := post(t, url+"/auth/refresh", map[string]string{"refreshToken": reg["refreshToken"].(string)})

	if err := stop(); err != nil {
		t.Fatalf("run after shutdown = %v, want nil", err)
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Error("the server still answers after shutdown")
	}
	out := logs.String()
	if !strings.Contains(out, "JWT_SECRET is not set") {
		t.Errorf("no warning about the random JWT secret in:\n%s", out)
	}
	for name, secret := range map[string]string{
		"password": password, "refresh token": reg["refreshToken"].(string),
		"access token": reg["accessToken"].(string), "new refresh token": refreshed["refreshToken"].(string),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, env := range []map[string]string{
		{"JWT_EXPIRES_IN": "soon"},
		{"PORT": "http"},
		{"DATABASE_URL": ":memory:"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, func(k string) string { return env[k] }, io.Discard, nil)
		cancel()
		if err == nil {
			t.Errorf("run(%v) = nil, want an error", env)
		}
	}
}
