package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/config"
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
		{"REDIS_URL": "not a url"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		env["DATABASE_URL"] = cmp.Or(env["DATABASE_URL"], filepath.Join(t.TempDir(), "auth.db"))
		err := run(ctx, func(k string) string { return env[k] }, io.Discard, nil)
		cancel()
		if err == nil {
			t.Errorf("run(%v) = nil, want an error", env)
		} else if strings.Contains(fmt.Sprint(env), "REDIS_URL") && !strings.Contains(err.Error(), "REDIS_URL") {
			t.Errorf("run(%v) = %v, want an error naming REDIS_URL", env, err)
		}
	}
}

// TestRunWithRedis starts the service with REDIS_URL: the lock lives in
// Redis and /health checks it.
func TestRunWithRedis(t *testing.T) {
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	url, logs, stop := startRun(t, map[string]string{"REDIS_URL": redisURL, "JWT_SECRET": strings.Repeat("s", 32)})
	reg := post(t, url+"/auth/register", map[string]string{"email": "redis@example.com", "password": "password123"})
	post(t, url+"/auth/refresh", map[string]string{"refreshToken": reg["refreshToken"].(string)})
	res, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `"redis":{"status":"up"}`) {
		t.Errorf("/health = %s, want redis up", body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "lock=redis") {
		t.Errorf("the start line does not name the Redis lock:\n%s", logs.String())
	}
}

// TestRunFinishesInFlightRequests stops the service while a request is in a
// handler, half sent: the listener closes at once, and the request still
// completes. The request says "Expect: 100-continue", so the server's 100
// Continue tells the test that the handler has started reading its body.
func TestRunFinishesInFlightRequests(t *testing.T) {
	url, _, stop := startRun(t, nil)
	body, send := io.Pipe()
	inHandler := make(chan struct{})
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got100Continue: func() { close(inHandler) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/auth/register", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	answered := make(chan int, 1)
	go func() {
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("the in-flight request failed: %v", err)
			answered <- 0
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	go func() { send.Write([]byte(`{"email":"inflight@example.com",`)) }() // sent after the 100 Continue
	<-inHandler

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown closes the listener first; wait until new connections are refused.
	addr := strings.TrimPrefix(url, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener is still open 10s after the shutdown began")
		}
		runtime.Gosched()
	}

	if _, err := send.Write([]byte(`"password":"password123"}`)); err != nil {
		t.Fatal(err)
	}
	send.Close()
	if status := <-answered; status != http.StatusCreated {
		t.Errorf("in-flight register = %d, want 201", status)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run = %v, want nil", err)
	}
}

// TestRunWithRedisDown: a Redis that does not answer is no reason to refuse
// work. The instance starts, refreshes go on under the database's
// compare-and-swap, /health stays 200 and shows Redis down, and the outage
// is logged once, not once per request.
func TestRunWithRedisDown(t *testing.T) {
	url, logs, _ := startRun(t, map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "JWT_SECRET": strings.Repeat("k", 32)}) // nothing listens there
	tok := post(t, url+"/auth/register", map[string]string{"email": "down@example.com", "password": "password123"})["refreshToken"].(string)
	for range 20 {
		tok = post(t, url+"/auth/refresh", map[string]string{"refreshToken": tok})["refreshToken"].(string)
	}
	res, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"redis":{"message":"redis is not answering`) || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("/health with Redis down = %d %s; want 200, status ok, redis down", res.StatusCode, body)
	}
	if n := strings.Count(logs.String(), "redis unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs.String())
	}
	metrics, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	for _, want := range []string{"auth_redis_up 0", `auth_refresh_lock_total{outcome="unavailable"} 20`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRunErasesSeals: a rotated token's sealed successor outlives the reuse
// window by at most one run of the erasing job: after it the row holds no
// seal, so a copy of the database holds nothing to open.
func TestRunErasesSeals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	url, _, _ := startRun(t, map[string]string{"DATABASE_URL": path, "REFRESH_REUSE_WINDOW": "1s", "LOCK_TIMEOUT": "1s"})
	tok := post(t, url+"/auth/register", map[string]string{"email": "seal@example.com", "password": "password123"})["refreshToken"].(string)
	post(t, url+"/auth/refresh", map[string]string{"refreshToken": tok})

	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sealed := func() int {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := sealed(); n != 1 {
		t.Fatalf("%d sealed rows right after a rotation, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sealed() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the seal is still there 10 s after a reuse window of 1 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rotated int
	if err := db.QueryRow("SELECT COUNT(*) FROM refresh_tokens WHERE rotated_at IS NOT NULL AND successor_hash IS NOT NULL").Scan(&rotated); err != nil || rotated != 1 {
		t.Errorf("the rotated row itself: %d, %v; want it kept for reuse detection", rotated, err)
	}
}

func TestCLI(t *testing.T) {
	runCLI := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli(t.Context(), args, func(string) string { return "" }, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, flag := range []string{"-h", "--help", "help"} {
		code, out, _ := runCLI(flag)
		if code != 0 || !strings.Contains(out, "migrate [status]") || !strings.Contains(out, "loadtest") {
			t.Errorf("authsvc %s = %d\n%s", flag, code, out)
		}
		for _, v := range config.Variables {
			if !hasLine(out, v.Name, v.Default) {
				t.Errorf("authsvc %s does not list %s with its default %q", flag, v.Name, v.Default)
			}
		}
	}
	for _, flag := range []string{"--version", "version"} {
		if code, out, _ := runCLI(flag); code != 0 || !strings.HasPrefix(out, "authsvc ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("authsvc %s = %d %q, want the version and the Go version", flag, code, out)
		}
	}
	if code, _, errOut := runCLI("nope"); code != 2 || !strings.Contains(errOut, `unknown command "nope"`) || !strings.Contains(errOut, "usage:") {
		t.Errorf("authsvc nope = %d %q, want 2 and the usage", code, errOut)
	}
	if code, _, errOut := runCLI("serve", "extra"); code != 2 || !strings.Contains(errOut, "no arguments") {
		t.Errorf("authsvc serve extra = %d %q, want 2", code, errOut)
	}
}

// With LOG_FORMAT=json every line the service writes is a JSON object, the
// ORM's and the fatal error included, even when the database is down.
func TestJSONLogsWithTheDatabaseDown(t *testing.T) {
	env := map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "PORT": "0"}
	var out, errOut bytes.Buffer
	if code := cli(t.Context(), nil, func(k string) string { return env[k] }, &out, &errOut); code != 1 {
		t.Fatalf("the service with its database down exited %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()+errOut.String()), "\n")
	var fatalSeen bool
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if rec["msg"] == "authsvc stopped" && rec["level"] == "ERROR" && strings.Contains(fmt.Sprint(rec["error"]), "postgres") {
			fatalSeen = true
		}
	}
	if !fatalSeen {
		t.Errorf("no JSON line for the fatal error in:\n%s", strings.Join(lines, "\n"))
	}
}

// The metrics an operator of a lock service expects: how long refreshes
// wait for and hold a token's lock, and how rotations share SQLite's
// transactions.
func TestRunLockAndGroupCommitMetrics(t *testing.T) {
	url, _, _ := startRun(t, nil)
	tok := post(t, url+"/auth/register", map[string]string{"email": "metrics@example.com", "password": "password123"})["refreshToken"].(string)
	for range 3 {
		tok = post(t, url+"/auth/refresh", map[string]string{"refreshToken": tok})["refreshToken"].(string)
	}
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"auth_refresh_lock_wait_seconds_count 3", "auth_refresh_lock_hold_seconds_count 3", "auth_group_commit_size_count 3"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
