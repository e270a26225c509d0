package tests

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/naiverotation"
)

// storm fires n refreshes of token at once: n goroutines wait on one channel
// and close(start) releases them together. It returns every answer; transport
// errors travel back as errors.
func storm(n int, refresh func(string) (response, error), token string) ([]response, []error) {
	start := make(chan struct{})
	results := make(chan response, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			r, err := refresh(token)
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
	var rs []response
	for r := range results {
		rs = append(rs, r)
	}
	var es []error
	for err := range errs {
		es = append(es, err)
	}
	return rs, es
}

// TestConcurrentRefreshNeverFails is the race this service exists for: 200
// requests present the same refresh token at once. Every one gets 200 and the
// same new refresh token, exactly one successor is stored, the token rotated
// once, and "record not found" appears nowhere, logs included.
func TestConcurrentRefreshNeverFails(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		cfg := defaultConfig()
		cfg.databaseURL = databaseURL
		a := newApp(t, cfg)
		s := a.register(t)

		const n = 200
		rs, errs := storm(n, a.refresh, s.RefreshToken)
		for _, err := range errs {
			t.Errorf("transport error: %v", err)
		}
		statuses := map[int]int{}
		successors := map[string]int{}
		for _, r := range rs {
			statuses[r.Status]++
			if r.Status == http.StatusOK {
				successors[newToken(t, r)]++
			}
			if strings.Contains(strings.ToLower(string(r.Body)), "record not found") {
				t.Errorf("a response says record not found: %s", r.Body)
			}
		}
		if statuses[http.StatusOK] != n {
			t.Fatalf("statuses = %v, want %d × 200", statuses, n)
		}
		if len(successors) != 1 {
			t.Fatalf("%d distinct successors returned, want 1", len(successors))
		}
		var successor string
		for tok := range successors {
			successor = tok
		}
		if successor == s.RefreshToken {
			t.Fatal("the successor is the presented token")
		}
		if rows := a.familyRows(t, s.RefreshToken); rows != 2 {
			t.Errorf("family has %d stored tokens, want 2 (the original and one successor)", rows)
		}
		if got := a.counter(t, "auth_refresh_total", "result", "rotated"); got != 1 {
			t.Errorf("rotations = %v, want exactly 1 write transaction", got)
		}
		if logs := strings.ToLower(a.Logs.String()); strings.Contains(logs, "record not found") {
			t.Errorf("the logs mention record not found:\n%s", logs)
		}
		if a.Locks.ActiveLockCount() != 0 {
			t.Errorf("ActiveLockCount after the storm = %d, want 0", a.Locks.ActiveLockCount())
		}
		// The successor is a working token.
		if r := a.mustRefresh(t, successor); r.Status != http.StatusOK {
			t.Errorf("refresh with the successor = %s, want 200", r)
		}
	})
}

// TestNaiveRefreshFails shows that the bug is real: the same storm against
// the original design without its lock — find the row, delete it, create the
// successor, as the NestJS service did with MUTEX=off — fails with "record not
// found". The naive rotation is package naiverotation.
func TestNaiveRefreshFails(t *testing.T) {
	a := newApp(t, defaultConfig())
	naive := naiveServer(t, a.DatabaseURL)
	refresh := func(token string) (response, error) {
		return naive.postJSON("/auth/refresh", map[string]string{"refreshToken": token})
	}

	failures := map[string]int{}
	for range 3 {
		s := a.register(t)
		rs, errs := storm(200, refresh, s.RefreshToken)
		for _, err := range errs {
			t.Fatalf("transport error: %v", err)
		}
		for _, r := range rs {
			if r.Status != http.StatusOK {
				failures[fmt.Sprintf("%d %s", r.Status, r.Body)]++
			}
		}
	}
	if !recordNotFound(failures) {
		t.Fatalf("the naive refresh never failed with record not found (failures: %v)", failures)
	}
	t.Logf("naive refresh failures: %v", failures)
}

func recordNotFound(failures map[string]int) bool {
	for f := range failures {
		if strings.Contains(f, "record not found") {
			return true
		}
	}
	return false
}

// naiveServer serves POST /auth/refresh with the original rotation
// (package naiverotation), on its own connection pool to the same SQLite
// file. The first two requests to find a token's row wait for each other
// before they delete it (naiverotation.Pairs), the interleaving of the
// original bug report, so that the race does not depend on timing.
func naiveServer(t *testing.T, path string) *app {
	t.Helper()
	pairs := &naiverotation.Pairs{Grace: 2 * time.Second} // a lone request goes on
	store, err := naiverotation.Open(path, naiverotation.WithAfterFind(pairs.Wait))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return newHTTPServer(t, naiverotation.Handler(store.Rotate))
}
