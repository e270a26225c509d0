package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/loadtest"
)

// loadtestRun is what one loadtest.Main call did.
type loadtestRun struct {
	code           int
	stdout, stderr string
}

// runLoadtest runs the load tool with args.
func runLoadtest(t *testing.T, args ...string) loadtestRun {
	t.Helper()
	if !slices.Contains(args, "--timeout") {
		// A request slower than the tool's 10 s default is a busy test
		// machine, not what these tests are about.
		args = append(args, "--timeout", "60s")
	}
	var stdout, stderr bytes.Buffer
	code := loadtest.Main(t.Context(), args, &stdout, &stderr)
	r := loadtestRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("loadtest %q panicked:\n%s", args, r.stderr)
	}
	return r
}

// decode parses the --json summary into v.
func (r loadtestRun) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
}

type loadtestErrorJSON struct {
	Count   int    `json:"count"`
	Status  int    `json:"status"`
	Message string `json:"message"`
}

type loadtestTallyJSON struct {
	Requests int                 `json:"requests"`
	OK       int                 `json:"ok"`
	Failed   int                 `json:"failed"`
	Statuses map[string]int      `json:"statuses"`
	Errors   []loadtestErrorJSON `json:"errors"`
}

type stormJSON struct {
	URL         string   `json:"url"`
	URLs        []string `json:"urls"`
	Concurrency int      `json:"concurrency"`
	Rounds      []struct {
		Round int `json:"round"`
		loadtestTallyJSON
		Successors int     `json:"successors"`
		DurationMS float64 `json:"durationMs"`
		FreshLogin bool    `json:"freshLogin"`
	} `json:"rounds"`
	Total struct {
		loadtestTallyJSON
		Successors             int `json:"successors"`
		RoundsWithOneSuccessor int `json:"roundsWithOneSuccessor"`
	} `json:"total"`
	Instances []struct {
		URL string `json:"url"`
		loadtestTallyJSON
	} `json:"instances"`
	Interrupted bool `json:"interrupted"`
}

type chainJSON struct {
	URL  string   `json:"url"`
	URLs []string `json:"urls"`
	loadtestTallyJSON
	PlannedCount       int     `json:"plannedCount"`
	ElapsedMS          float64 `json:"elapsedMs"`
	RefreshesPerSecond float64 `json:"refreshesPerSecond"`
	LatencyMS          struct {
		Samples int     `json:"samples"`
		P50     float64 `json:"p50"`
		P90     float64 `json:"p90"`
		P99     float64 `json:"p99"`
		Max     float64 `json:"max"`
	} `json:"latencyMs"`
	Relogins  loadtestTallyJSON `json:"relogins"`
	Instances []struct {
		URL string `json:"url"`
		loadtestTallyJSON
		LatencyMS struct {
			Samples int `json:"samples"`
		} `json:"latencyMs"`
		Relogins loadtestTallyJSON `json:"relogins"`
	} `json:"instances"`
}

// TestLoadtestStorm: 3 rounds of 100 concurrent refreshes of one token
// against the service all get 200 and one successor per round, which the
// next round refreshes; the service rotated exactly once per round.
func TestLoadtestStorm(t *testing.T) {
	a := newApp(t, defaultConfig())
	r := runLoadtest(t, "storm", "--url", a.URL, "-n", "100", "--rounds", "3", "--json")
	if r.code != 0 {
		t.Errorf("exit status = %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	var got stormJSON
	r.decode(t, &got)
	if got.Total.Requests != 300 || got.Total.OK != 300 || got.Total.Failed != 0 || got.Total.Statuses["200"] != 300 || len(got.Total.Statuses) != 1 {
		t.Errorf("total = %+v, want 300 requests, all 200", got.Total.loadtestTallyJSON)
	}
	if len(got.Total.Errors) != 0 {
		t.Errorf("errors = %+v, want none", got.Total.Errors)
	}
	if len(got.Rounds) != 3 || got.Total.Successors != 3 || got.Total.RoundsWithOneSuccessor != 3 {
		t.Fatalf("%d rounds, %d successors, %d rounds with one successor; want 3, 3, 3", len(got.Rounds), got.Total.Successors, got.Total.RoundsWithOneSuccessor)
	}
	for i, rr := range got.Rounds {
		if rr.Round != i+1 || rr.Requests != 100 || rr.Statuses["200"] != 100 || rr.Successors != 1 || rr.DurationMS <= 0 {
			t.Errorf("round %d = %+v, want 100 × 200, one successor, a duration", i+1, rr)
		}
		if wantFresh := i == 0; rr.FreshLogin != wantFresh {
			t.Errorf("round %d freshLogin = %v, want %v (later rounds refresh the successor)", i+1, rr.FreshLogin, wantFresh)
		}
	}
	if rotations := a.counter(t, "auth_refresh_total", "result", "rotated"); rotations != 3 {
		t.Errorf("the service rotated %v times, want 3 (once per round)", rotations)
	}
	if n := strings.Count(r.stderr, "round "); n != 3 {
		t.Errorf("stderr has %d round lines, want 3:\n%s", n, r.stderr)
	}
	if got.Interrupted {
		t.Error("interrupted = true")
	}
	if got.URL != a.URL || len(got.URLs) != 1 || got.URLs[0] != a.URL {
		t.Errorf("url %q, urls %q; want %q for both", got.URL, got.URLs, a.URL)
	}
	if len(got.Instances) != 1 || got.Instances[0].URL != a.URL || got.Instances[0].Requests != 300 || got.Instances[0].Statuses["200"] != 300 {
		t.Errorf("instances = %+v, want the one target with the 300 requests", got.Instances)
	}

	// Without --json: the same figures as a table, without a table of instances.
	r = runLoadtest(t, "storm", "--url", a.URL, "-n", "10", "--rounds", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "2/2 rounds with one successor") || !strings.Contains(r.stdout, "200×20") ||
		!strings.Contains(r.stdout, "against "+a.URL+"\n") || strings.Contains(r.stdout, "instance") {
		t.Errorf("table run: exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// naiveFront serves the naive refresh (naiveServer) behind the contract's
// routes: POST /auth/refresh goes to the naive handler, everything else to
// the real service a, over the same database.
func naiveFront(t *testing.T, a *app) *app {
	t.Helper()
	naive := naiveServer(t, a.DatabaseURL)
	appURL, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	naiveURL, err := url.Parse(naive.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 1000}
	t.Cleanup(tr.CloseIdleConnections)
	mux := http.NewServeMux()
	mux.Handle("POST /auth/refresh", &httputil.ReverseProxy{Transport: tr, Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(naiveURL) }})
	mux.Handle("/", &httputil.ReverseProxy{Transport: tr, Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(appURL) }})
	return newHTTPServer(t, mux)
}

// TestLoadtestStormNaive: the same storm against the naive refresh shows the
// bug by name: failures grouped by message, "record not found" among them,
// and exit status 1.
func TestLoadtestStormNaive(t *testing.T) {
	a := newApp(t, defaultConfig())
	front := naiveFront(t, a)
	r := runLoadtest(t, "storm", "--url", front.URL, "-n", "100", "--rounds", "3", "--json")
	if r.code != 1 {
		t.Errorf("exit status = %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	var got stormJSON
	r.decode(t, &got)
	if got.Total.Requests != 300 || got.Total.Failed == 0 || got.Total.OK+got.Total.Failed != 300 {
		t.Errorf("total = %+v, want 300 requests, some failed", got.Total.loadtestTallyJSON)
	}
	failed := 0
	var notFound *loadtestErrorJSON
	for i, e := range got.Total.Errors {
		failed += e.Count
		if e.Message == "record not found" {
			notFound = &got.Total.Errors[i]
		}
	}
	if notFound == nil || notFound.Status != http.StatusInternalServerError || notFound.Count == 0 {
		t.Fatalf("errors = %+v, want a group 500 \"record not found\"", got.Total.Errors)
	}
	if failed != got.Total.Failed {
		t.Errorf("the error groups count %d failures, the total %d", failed, got.Total.Failed)
	}
	t.Logf("naive storm: statuses %v, errors %+v", got.Total.Statuses, got.Total.Errors)
}

// TestLoadtestChain: --count 200 makes exactly 200 refreshes, all 200, with
// ordered percentiles; the service rotated 200 times.
func TestLoadtestChain(t *testing.T) {
	a := newApp(t, defaultConfig())
	r := runLoadtest(t, "chain", "--url", a.URL, "--users", "3", "-c", "8", "--count", "200", "--json")
	if r.code != 0 {
		t.Errorf("exit status = %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	var got chainJSON
	r.decode(t, &got)
	if got.Requests != 200 || got.OK != 200 || got.Failed != 0 || got.Statuses["200"] != 200 || len(got.Statuses) != 1 || len(got.Errors) != 0 {
		t.Errorf("refreshes = %+v, want exactly 200, all 200", got.loadtestTallyJSON)
	}
	l := got.LatencyMS
	if l.Samples != 200 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency = %+v, want 200 samples and 0 < p50 ≤ p90 ≤ p99 ≤ max", l)
	}
	if got.ElapsedMS <= 0 || got.RefreshesPerSecond <= 0 || got.PlannedCount != 200 {
		t.Errorf("elapsed %vms, %v/s, planned %d: want positive figures and 200", got.ElapsedMS, got.RefreshesPerSecond, got.PlannedCount)
	}
	if got.Relogins.Requests != 0 {
		t.Errorf("relogins = %+v, want none", got.Relogins)
	}
	if rotations := a.counter(t, "auth_refresh_total", "result", "rotated"); rotations != 200 {
		t.Errorf("the service rotated %v times, want 200", rotations)
	}
}

// TestLoadtestChainRelogin: a client whose refresh fails counts the failure,
// logs in again and goes on; the run exits 1.
func TestLoadtestChainRelogin(t *testing.T) {
	a := newApp(t, defaultConfig())
	var refreshes atomic.Int64
	front := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth/refresh" && refreshes.Add(1)%10 == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"message":"Invalid refresh token","error":"Unauthorized","statusCode":401}`))
			return
		}
		a.Server.Config.Handler.ServeHTTP(w, r)
	}))
	r := runLoadtest(t, "chain", "--url", front.URL, "--users", "2", "-c", "4", "--count", "100", "--json")
	if r.code != 1 {
		t.Errorf("exit status = %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	var got chainJSON
	r.decode(t, &got)
	if got.Requests != 100 || got.Failed != 10 || got.Statuses["401"] != 10 || got.Statuses["200"] != 90 {
		t.Errorf("refreshes = %+v, want 100: 90 × 200, 10 × 401", got.loadtestTallyJSON)
	}
	if len(got.Errors) != 1 || got.Errors[0] != (loadtestErrorJSON{Count: 10, Status: 401, Message: "Invalid refresh token"}) {
		t.Errorf("errors = %+v, want 10 × 401 Invalid refresh token", got.Errors)
	}
	if got.Relogins.Requests != 10 || got.Relogins.OK != 10 {
		t.Errorf("relogins = %+v, want 10, all ok", got.Relogins)
	}
}

// TestLoadtestUnusableTarget: a target that is not there, or does not speak
// the contract, stops the run with one clear line and exit status 2.
func TestLoadtestUnusableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html><body>It works!</body></html>"))
	}))
	t.Cleanup(html.Close)

	tests := []struct {
		name string
		url  string
		want string // the whole of stderr
	}{
		{"unreachable", closed, "loadtest: cannot reach " + closed + ": connection refused\n"},
		{"404 everywhere", notFound.URL, `loadtest: POST ` + notFound.URL + `/auth/register answered 404 "404 page not found": the server does not speak the authsvc HTTP contract (see docs/API.md)` + "\n"},
		{"not JSON", html.URL, `loadtest: POST ` + html.URL + `/auth/register answered 200 "<html><body>It works!</body></html>": the server does not speak the authsvc HTTP contract (see docs/API.md)` + "\n"},
	}
	for _, tt := range tests {
		for _, mode := range [][]string{{"storm", "-n", "5", "--rounds", "1"}, {"chain", "--count", "5", "-c", "2", "--users", "1"}} {
			t.Run(tt.name+"/"+mode[0], func(t *testing.T) {
				r := runLoadtest(t, append(mode, "--url", tt.url, "--json")...)
				if r.code != 2 {
					t.Errorf("exit status = %d, want 2", r.code)
				}
				if r.stderr != tt.want {
					t.Errorf("stderr = %q\nwant     %q", r.stderr, tt.want)
				}
				if r.stdout != "" {
					t.Errorf("stdout = %q, want nothing", r.stdout)
				}
			})
		}
	}
}

// instances starts n service instances over one database (databaseURL, or a
// fresh SQLite file when ""), each with a lock of its own as separate
// processes would have, and returns them and their URLs.
func instances(t *testing.T, databaseURL string, n int) ([]*app, []string) {
	t.Helper()
	cfg := defaultConfig()
	cfg.databaseURL = databaseURL
	apps := []*app{newApp(t, cfg)}
	for len(apps) < n {
		apps = append(apps, secondInstance(t, apps[0], defaultConfig()))
	}
	urls := make([]string, n)
	for i, a := range apps {
		urls[i] = a.URL
	}
	return apps, urls
}

// urlArgs returns "--url u" for each of urls.
func urlArgs(urls ...string) []string {
	var args []string
	for _, u := range urls {
		args = append(args, "--url", u)
	}
	return args
}

// answered counts the requests the app answered on route with status, by its
// http_request_duration_seconds histogram: the server's side of the count.
func (a *app) answered(t testing.TB, method, route string, status int) uint64 {
	t.Helper()
	mfs, err := a.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	want := map[string]string{"method": method, "route": route, "status": strconv.Itoa(status)}
	for _, mf := range mfs {
		if mf.GetName() != "http_request_duration_seconds" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestLoadtestStormInstances: a storm against three instances over one
// database spreads each round's 90 refreshes of one token over them, 30 each;
// every answer is a 200 with one successor per round, the report counts 90
// requests at each instance, and each instance answered exactly those.
func TestLoadtestStormInstances(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		apps, urls := instances(t, databaseURL, 3)
		r := runLoadtest(t, append([]string{"storm", "-n", "90", "--rounds", "3", "--json"}, urlArgs(urls...)...)...)
		if r.code != 0 {
			t.Errorf("exit status = %d, want 0; stderr:\n%s", r.code, r.stderr)
		}
		var got stormJSON
		r.decode(t, &got)
		if got.Total.Requests != 270 || got.Total.OK != 270 || got.Total.Statuses["200"] != 270 || len(got.Total.Statuses) != 1 {
			t.Errorf("total = %+v, want 270 requests, all 200", got.Total.loadtestTallyJSON)
		}
		if len(got.Rounds) != 3 || got.Total.RoundsWithOneSuccessor != 3 {
			t.Errorf("%d rounds, %d with one successor; want 3, 3: %+v", len(got.Rounds), got.Total.RoundsWithOneSuccessor, got.Rounds)
		}
		if got.URL != "" || !slices.Equal(got.URLs, urls) {
			t.Errorf("url %q, urls %q; want no url and urls %q", got.URL, got.URLs, urls)
		}
		if len(got.Instances) != len(apps) {
			t.Fatalf("%d instances in the report, want %d: %+v", len(got.Instances), len(apps), got.Instances)
		}
		var rotations float64
		for i, a := range apps {
			in := got.Instances[i]
			if in.URL != a.URL || in.Requests != 90 || in.OK != 90 || in.Statuses["200"] != 90 || len(in.Errors) != 0 {
				t.Errorf("instance %d = %+v, want %s with 90 requests, all 200", i, in, a.URL)
			}
			if n := a.answered(t, "POST", "/auth/refresh", 200); n != 90 {
				t.Errorf("instance %d answered %d refreshes with 200, want 90", i, n)
			}
			rotations += a.counter(t, "auth_refresh_total", "result", "rotated")
		}
		if rotations != 3 {
			t.Errorf("the instances rotated %v times in all, want 3 (once per round)", rotations)
		}

		// The table names each instance with its share.
		r = runLoadtest(t, append([]string{"storm", "-n", "12", "--rounds", "1"}, urlArgs(urls...)...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "against 3 instances") {
			t.Errorf("table run: exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		rows := map[string]bool{}
		for line := range strings.Lines(r.stdout) {
			rows[strings.Join(strings.Fields(line), " ")] = true
		}
		for _, u := range urls {
			if row := u + " 4 4 0 200×4"; !rows[row] {
				t.Errorf("the table has no row %q:\n%s", row, r.stdout)
			}
		}
	})
}

// TestLoadtestChainInstances: a chain against three instances over one
// database has each client send its successive refreshes to the next
// instance, so each token is refreshed at another instance than the one that
// minted it; all 300 refreshes get 200, every instance gets its share, and
// the report's count for each instance is what that instance answered and
// rotated.
func TestLoadtestChainInstances(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		const clients, count = 6, 300
		apps, urls := instances(t, databaseURL, 3)
		r := runLoadtest(t, append([]string{"chain", "--users", "3", "-c", strconv.Itoa(clients), "--count", strconv.Itoa(count), "--json"}, urlArgs(urls...)...)...)
		if r.code != 0 {
			t.Errorf("exit status = %d, want 0; stderr:\n%s", r.code, r.stderr)
		}
		var got chainJSON
		r.decode(t, &got)
		if got.Requests != count || got.OK != count || got.Statuses["200"] != count || len(got.Statuses) != 1 || got.Relogins.Requests != 0 {
			t.Errorf("refreshes = %+v, relogins %+v; want exactly %d, all 200, no relogins", got.loadtestTallyJSON, got.Relogins, count)
		}
		if got.URL != "" || !slices.Equal(got.URLs, urls) {
			t.Errorf("url %q, urls %q; want no url and urls %q", got.URL, got.URLs, urls)
		}
		if len(got.Instances) != len(apps) {
			t.Fatalf("%d instances in the report, want %d: %+v", len(got.Instances), len(apps), got.Instances)
		}
		// Each client's refreshes rotate over the 3 instances, so each
		// instance gets at least a third of each client's refreshes,
		// rounded down: in all, at least (count - 2·clients) / 3.
		least := (count - 2*clients) / 3
		sum := 0
		for i, a := range apps {
			in := got.Instances[i]
			sum += in.Requests
			if in.URL != a.URL || in.Requests < least || in.OK != in.Requests || in.Statuses["200"] != in.Requests || in.LatencyMS.Samples != in.Requests {
				t.Errorf("instance %d = %+v, want %s with at least %d refreshes, all 200", i, in, a.URL, least)
			}
			if n := a.answered(t, "POST", "/auth/refresh", 200); n != uint64(in.OK) {
				t.Errorf("instance %d answered %d refreshes with 200, the report says %d", i, n, in.OK)
			}
			if rot := a.counter(t, "auth_refresh_total", "result", "rotated"); rot != float64(in.OK) {
				t.Errorf("instance %d rotated %v times, want %d (once per refresh)", i, rot, in.OK)
			}
		}
		if sum != count {
			t.Errorf("the instances' refreshes add up to %d, want %d", sum, count)
		}
	})
}

// silentListener accepts TCP connections and never answers on them, until
// the test ends. It returns its URL.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at the end of the test
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// TestLoadtestSilentTarget: a target that accepts connections and never
// answers stops the run within --timeout with one line that says so, and exit
// status 2, not an "interrupted" exit 1; alone or behind a good instance.
func TestLoadtestSilentTarget(t *testing.T) {
	const timeout = 500 * time.Millisecond
	silent := silentListener(t)
	good := newApp(t, defaultConfig())
	want := "loadtest: " + silent + " accepted a connection but gave no answer within 500ms (--timeout): it does not speak the authsvc HTTP contract\n"
	for _, urls := range [][]string{{silent}, {good.URL, silent}} {
		for _, mode := range [][]string{{"storm", "-n", "5", "--rounds", "1"}, {"chain", "--count", "5", "-c", "2", "--users", "1"}} {
			t.Run(fmt.Sprintf("%s/%d urls", mode[0], len(urls)), func(t *testing.T) {
				start := time.Now()
				r := runLoadtest(t, append(append(mode, "--timeout", timeout.String(), "--json"), urlArgs(urls...)...)...)
				elapsed := time.Since(start)
				if r.code != 2 {
					t.Errorf("exit status = %d, want 2", r.code)
				}
				if r.stderr != want {
					t.Errorf("stderr = %q\nwant     %q", r.stderr, want)
				}
				if r.stdout != "" {
					t.Errorf("stdout = %q, want nothing", r.stdout)
				}
				// The bound is the point: the check waits --timeout, not
				// forever. Generous for -race on a busy machine.
				if elapsed > timeout+30*time.Second {
					t.Errorf("the run took %s with --timeout %s", elapsed, timeout)
				}
			})
		}
	}
}

// TestLoadtestOneBadURL: among good instances, one URL that cannot be used,
// whatever the reason, stops the run before it begins with one line naming
// that URL, and exit status 2.
func TestLoadtestOneBadURL(t *testing.T) {
	apps, urls := instances(t, "", 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	otherDB := newApp(t, defaultConfig()) // a service of its own database: the users of apps are unknown there

	tests := []struct {
		name, url, want string
	}{
		{"unreachable", closed, "loadtest: cannot reach " + closed + ": connection refused\n"},
		{"404 everywhere", notFound.URL, `loadtest: POST ` + notFound.URL + `/auth/login answered 404 "404 page not found": the server does not speak the authsvc HTTP contract (see docs/API.md)` + "\n"},
		{"another database", otherDB.URL, "loadtest: POST " + otherDB.URL + "/auth/login answered 401: Invalid credentials: it does not know the user just signed in at " +
			apps[0].URL + "; the instances must share one database\n"},
	}
	for _, tt := range tests {
		for _, mode := range [][]string{{"storm", "-n", "5", "--rounds", "1"}, {"chain", "--count", "5", "-c", "2", "--users", "1"}} {
			t.Run(tt.name+"/"+mode[0], func(t *testing.T) {
				r := runLoadtest(t, append(append(mode, "--json"), urlArgs(urls[0], tt.url, urls[1])...)...)
				if r.code != 2 {
					t.Errorf("exit status = %d, want 2", r.code)
				}
				if r.stderr != tt.want {
					t.Errorf("stderr = %q\nwant     %q", r.stderr, tt.want)
				}
				if r.stdout != "" {
					t.Errorf("stdout = %q, want nothing", r.stdout)
				}
			})
		}
	}
	for i, a := range apps {
		if n := a.answered(t, "POST", "/auth/refresh", 200); n != 0 {
			t.Errorf("instance %d answered %d refreshes; want none, the runs stopped before they began", i, n)
		}
	}
}
