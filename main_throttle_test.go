package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// guess posts a wrong password for email and returns the status and the
// X-RateLimit-Limit-account header.
func guess(t *testing.T, url, email string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": "not-the-password"})
	res, err := http.Post(url+"/auth/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("X-RateLimit-Limit-account")
}

// TestRunThrottlesByDefault: the service as started without THROTTLE limits
// guessing: of 7 wrong passwords for one account, 5 get 401 and 2 get 429.
// The limit is 5 an hour rather than the default 5 a minute, which gives one
// guess back every 12s: each 401 costs a bcrypt at the default cost, slow
// under -race on a busy machine. (Few guesses for the same reason.)
func TestRunThrottlesByDefault(t *testing.T) {
	url, _, _ := startRun(t, map[string]string{"THROTTLE_LOGIN_ACCOUNT": "5/1h"})
	statuses := map[int]int{}
	for range 7 {
		status, limit := guess(t, url, "Guessed@Example.com")
		statuses[status]++
		if status == http.StatusUnauthorized && limit != "5" {
			t.Errorf("X-RateLimit-Limit-account = %q, want 5", limit)
		}
	}
	if statuses[401] != 5 || statuses[429] != 2 {
		t.Errorf("7 guesses = %v, want 5 × 401 and 2 × 429", statuses)
	}
}

// TestRunThrottleOff: THROTTLE=off limits nothing, however low the limits,
// and sends no rate-limit headers.
func TestRunThrottleOff(t *testing.T) {
	url, logs, _ := startRun(t, map[string]string{"THROTTLE": "off", "THROTTLE_LOGIN_IP": "1/1h", "THROTTLE_LOGIN_ACCOUNT": "1/1h"})
	for i := range 3 {
		status, limit := guess(t, url, "nobody@example.com")
		if status != http.StatusUnauthorized || limit != "" {
			t.Fatalf("guess %d with THROTTLE=off = %d (X-RateLimit-Limit-account %q), want 401 and no header", i+1, status, limit)
		}
	}
	if !bytes.Contains([]byte(logs.String()), []byte("THROTTLE=off")) {
		t.Error("THROTTLE=off was not logged at start")
	}
}
