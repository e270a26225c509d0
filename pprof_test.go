package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// pprofAddr is the address the service's log says the profiles are served on.
func pprofAddr(t *testing.T, logs *lockedBuffer) string {
	t.Helper()
	m := regexp.MustCompile(`msg="pprof listening[^"]*" addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no pprof address in the log:\n%s", logs.String())
	}
	return m[1]
}

// Without PPROF_ADDR no profile is served anywhere: the public listener
// answers /debug/pprof/ 404 and the service opens no second listener.
func TestPprofOffByDefault(t *testing.T) {
	url, logs, stop := startRun(t, nil)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		if status, _ := get(t, url+path); status != http.StatusNotFound {
			t.Errorf("GET %s on the public listener = %d, want 404", path, status)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Contains(out, "pprof listening") {
		t.Errorf("the service mentions pprof without PPROF_ADDR:\n%s", out)
	}
}

// With PPROF_ADDR the profiles answer on that address only, and the
// listener closes with the service.
func TestPprofOnItsOwnAddress(t *testing.T) {
	url, logs, stop := startRun(t, map[string]string{"PPROF_ADDR": "127.0.0.1:0"})
	pprofURL := "http://" + pprofAddr(t, logs)
	if status, body := get(t, pprofURL+"/debug/pprof/"); status != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ on PPROF_ADDR = %d, want 200 and the list of profiles:\n%s", status, body)
	}
	if status, body := get(t, pprofURL+"/debug/pprof/goroutine?debug=1"); status != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("GET /debug/pprof/goroutine?debug=1 = %d, want 200 and a goroutine profile", status)
	}
	if status, _ := get(t, url+"/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the public listener = %d, want 404", status)
	}
	if status, _ := get(t, pprofURL+"/health"); status != http.StatusNotFound {
		t.Errorf("GET /health on PPROF_ADDR = %d, want 404: the API is not served there", status)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(pprofURL + "/debug/pprof/"); err == nil {
		t.Error("the pprof listener still answers after shutdown")
	}
}

// A PPROF_ADDR that cannot be listened on stops the start, naming the variable.
func TestPprofAddressTaken(t *testing.T) {
	_, logs, _ := startRun(t, map[string]string{"PPROF_ADDR": "127.0.0.1:0"})
	taken := pprofAddr(t, logs)
	env := map[string]string{"PORT": "0", "DATABASE_URL": t.TempDir() + "/auth.db", "PPROF_ADDR": taken}
	err := run(t.Context(), func(k string) string { return env[k] }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "PPROF_ADDR") {
		t.Errorf("run with PPROF_ADDR=%s taken = %v, want an error naming PPROF_ADDR", taken, err)
	}
}
