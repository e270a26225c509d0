// Package demo is `authsvc demo`: the refresh race shown in one command. On a
// throwaway SQLite database it starts three servers side by side, fires the
// same storms of concurrent refreshes of one token at each, and prints one
// table of what each answered:
//
//   - naive: the original rotation (package naiverotation: find, delete,
//     create, no lock). Callers that found the row after another deleted it
//     get 500 "record not found"; the later ones get 401.
//   - mutex: the same rotation under a per-token mutex. No 500s, but the
//     waiters find the row gone and get 401: logged out anyway.
//   - service: this service, started by the same code as `authsvc serve`.
//     Every caller gets 200 and the same successor, from one rotation.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the read-only view of the demo's database

	"github.com/tokenrelay/authsvc/internal/barrier"
	"github.com/tokenrelay/authsvc/mutex"
	"github.com/tokenrelay/authsvc/naiverotation"
)

// ServeFunc starts the service as `authsvc serve` does, configured by
// getenv, sends the address it listens on to ready, and serves until ctx
// ends.
type ServeFunc func(ctx context.Context, getenv func(string) string, ready chan<- net.Addr) error

// Config is what a demo runs.
type Config struct {
	Rounds      int       // storms per side
	Concurrency int       // refreshes of one token per storm
	Serve       ServeFunc // the service
	// Pair makes the naive side's race deterministic (naiverotation.Pairs):
	// without it, whether a storm's callers find the row before the first
	// one deletes it is left to timing, and an in-process SQLite is fast.
	Pair bool
}

// The sides of the table, in its order.
const (
	Naive   = "naive"
	Mutex   = "mutex"
	Service = "service"
)

// Side is what one server answered over every round.
type Side struct {
	Name        string
	Requests    int
	Statuses    map[int]int    // answers by HTTP status; 0 counts transport errors
	Failures    map[string]int // non-200 answers by "status message"
	Successors  []int          // per round: distinct refresh tokens returned
	Stored      []int          // per round: successor rows in the database
	Kept        int            // callers left holding a refresh token that works
	Rotations   int            // the service only: rotations committed, from its metrics
	RoundTimes  []time.Duration
	description string
}

// Median is the median time from a round's release to its last answer.
func (s Side) Median() time.Duration {
	d := slices.Clone(s.RoundTimes)
	slices.Sort(d)
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

// Report is a demo's outcome.
type Report struct {
	Config
	Sides []Side // Naive, Mutex, Service
}

// Side returns the side named name.
func (r Report) Side(name string) Side {
	for _, s := range r.Sides {
		if s.Name == name {
			return s
		}
	}
	return Side{}
}

// server is one side under test.
type server struct {
	name, base, description string
	works                   func(ctx context.Context, token string) bool // refreshes token once, and reports whether it worked
	metrics                 string                                       // the service's /metrics; "" for the others
}

// Run starts the three servers on a database in a new temporary directory,
// runs the storms and returns what each server answered. The directory is
// removed before Run returns.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	if cfg.Rounds < 1 || cfg.Concurrency < 1 {
		return Report{}, fmt.Errorf("rounds %d, concurrency %d: want at least 1 each", cfg.Rounds, cfg.Concurrency)
	}
	dir, err := os.MkdirTemp("", "authsvc-demo-")
	if err != nil {
		return Report{}, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	path := filepath.Join(dir, "auth.db")

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // the servers are down before the directory goes
	defer cancel()

	// The service first: it creates the schema the naive servers use.
	env := map[string]string{
		"DATABASE_URL": path,
		"PORT":         "0",
		"JWT_SECRET":   rand.Text() + rand.Text(),
		"THROTTLE":     "off", // one user logs in every round, from one address
		"LOG_LEVEL":    "warn",
	}
	ready, served := make(chan net.Addr, 1), make(chan error, 1)
	wg.Go(func() { served <- cfg.Serve(ctx, func(k string) string { return env[k] }, ready) })
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-served:
		return Report{}, fmt.Errorf("start the service: %w", err)
	}
	port := addr.(*net.TCPAddr).Port
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	c := newClient(cfg.Concurrency)
	defer c.close()
	svc := server{name: Service, base: base, description: "this service, as `authsvc serve` runs it: every caller gets the one successor",
		works: func(ctx context.Context, token string) bool {
			return c.refresh(ctx, base+"/auth/refresh", token).status == http.StatusOK
		},
		metrics: base + "/metrics"}

	// plain rotates without pairing: the mutex side's store, and the check
	// that a naive successor works.
	plain, err := naiverotation.Open(path)
	if err != nil {
		return Report{}, err
	}
	defer plain.Close()
	naive, description := plain, "find, delete, create; no lock (the original bug), left to timing"
	if cfg.Pair {
		pairs := &naiverotation.Pairs{Grace: 2 * time.Second}
		if naive, err = naiverotation.Open(path, naiverotation.WithAfterFind(pairs.Wait)); err != nil {
			return Report{}, err
		}
		defer naive.Close()
		description = "find, delete, create; no lock (the original bug), the first two finders paired as in Node"
	}
	naiveURL, err := listen(ctx, &wg, naiverotation.Handler(naive.Rotate))
	if err != nil {
		return Report{}, err
	}
	locked := naiverotation.Locked{Store: plain, Locks: mutex.NewMemory(mutex.MemoryOptions{Timeout: 5 * time.Second})}
	mutexURL, err := listen(ctx, &wg, naiverotation.Handler(locked.Rotate))
	if err != nil {
		return Report{}, err
	}
	works := func(ctx context.Context, token string) bool {
		_, err := plain.Rotate(ctx, token)
		return err == nil
	}
	servers := []server{
		{name: Naive, base: naiveURL, description: description, works: works},
		{name: Mutex, base: mutexURL, description: "the same under a per-token mutex: the waiters find the row gone", works: works},
		svc,
	}

	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		return Report{}, err
	}
	defer db.Close()
	email, password := "demo-"+strings.ToLower(rand.Text()[:10])+"@example.com", rand.Text()
	if _, err := c.signIn(ctx, svc.base+"/auth/register", email, password); err != nil {
		return Report{}, fmt.Errorf("register at the service: %w", err)
	}
	rep = Report{Config: cfg}
	for _, s := range servers {
		rep.Sides = append(rep.Sides, Side{Name: s.name, Statuses: map[int]int{}, Failures: map[string]int{}, description: s.description})
	}
	// Round by round, each side in turn: a slow moment of a shared machine
	// falls on all three alike.
	for r := 0; r < cfg.Rounds; r++ {
		for i, s := range servers {
			if err := round(ctx, c, db, svc.base, s, email, password, cfg.Concurrency, &rep.Sides[i]); err != nil {
				return Report{}, fmt.Errorf("round %d, %s: %w", r+1, s.name, err)
			}
		}
	}
	return rep, nil
}

// listen serves h on an ephemeral loopback port until ctx ends, and returns
// its base URL.
func listen(ctx context.Context, wg *sync.WaitGroup, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() {
		<-ctx.Done()
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String(), nil
}

// round logs in at the service for a fresh token, fires n refreshes of it at
// s at once, and adds the answers to side: their statuses, the distinct
// successors, the successors stored, and how many callers hold a token that
// works (each distinct successor is tried once, with one refresh), and for the
// service the rotations it committed.
func round(ctx context.Context, c *client, db *sql.DB, service string, s server, email, password string, n int, side *Side) error {
	token, err := c.signIn(ctx, service+"/auth/login", email, password)
	if err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	h := sha256.Sum256([]byte(token))
	var family string
	if err := db.QueryRowContext(ctx, `SELECT family_id FROM refresh_tokens WHERE token_hash = ?`, h[:]).Scan(&family); err != nil {
		return fmt.Errorf("the login's token: %w", err)
	}

	const rotated = `auth_refresh_total{result="rotated"}`
	var before int
	if s.metrics != "" {
		if before, err = c.counter(ctx, s.metrics, rotated); err != nil {
			return err
		}
	}
	answers, elapsed := storm(ctx, c, s.base+"/auth/refresh", token, n)
	if s.metrics != "" {
		after, err := c.counter(ctx, s.metrics, rotated)
		if err != nil {
			return err
		}
		side.Rotations += after - before
	}
	side.Requests += n
	side.RoundTimes = append(side.RoundTimes, elapsed)
	holders := map[string]int{} // successor -> callers holding it
	for _, a := range answers {
		side.Statuses[a.status]++
		if a.status == http.StatusOK && a.token != "" {
			holders[a.token]++
			continue
		}
		side.Failures[strings.TrimSpace(strconv.Itoa(a.status)+" "+a.message)]++
	}
	side.Successors = append(side.Successors, len(holders))
	var stored int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens WHERE family_id = ? AND token_hash <> ?`, family, h[:]).Scan(&stored); err != nil {
		return fmt.Errorf("count successors: %w", err)
	}
	side.Stored = append(side.Stored, stored)
	for successor, callers := range holders {
		if s.works(ctx, successor) {
			side.Kept += callers
		}
	}
	return ctx.Err()
}

// answer is what one refresh got.
type answer struct {
	status  int    // 0: no answer
	token   string // the successor, on 200
	message string // the error's message, or the transport error
}

// storm fires n refreshes of token at url at once, released together
// (barrier.Release). It returns the answers and the time from the release to
// the last one.
func storm(ctx context.Context, c *client, url, token string, n int) ([]answer, time.Duration) {
	answers := make([]answer, n)
	elapsed := barrier.Release(n, nil, func(i int) {
		answers[i] = c.refresh(ctx, url, token)
	})
	return answers, elapsed
}

// client speaks the contract's JSON to the three servers.
type client struct{ hc *http.Client }

func newClient(conns int) *client {
	return &client{hc: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: 3 * conns},
		Timeout:   30 * time.Second,
	}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

func (c *client) post(ctx context.Context, url string, body any) answer {
	b, _ := json.Marshal(body) // maps of strings always marshal
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return answer{message: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{message: err.Error()}
	}
	defer resp.Body.Close()
	var out struct {
		RefreshToken string          `json:"refreshToken"`
		Message      json.RawMessage `json:"message"`
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{status: resp.StatusCode, message: err.Error()}
	}
	a := answer{status: resp.StatusCode}
	if json.Unmarshal(data, &out) == nil {
		a.token = out.RefreshToken
		var msg string
		if json.Unmarshal(out.Message, &msg) == nil {
			a.message = msg
		} else {
			a.message = string(out.Message) // class-validator's list of messages
		}
	}
	return a
}

func (c *client) refresh(ctx context.Context, url, token string) answer {
	return c.post(ctx, url, map[string]string{"refreshToken": token})
}

// signIn registers or logs in (url says which) and returns the refresh token.
func (c *client) signIn(ctx context.Context, url, email, password string) (string, error) {
	a := c.post(ctx, url, map[string]string{"email": email, "password": password})
	if a.status/100 != 2 || a.token == "" {
		return "", fmt.Errorf("%s: %d %s", url, a.status, a.message)
	}
	return a.token, nil
}

// counter reads the value of the sample named series from the Prometheus
// text exposition at url.
func (c *client) counter(ctx context.Context, url, series string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, nil // a counter vector shows a label's series only once it has counted
}

// Main is `authsvc demo`: it parses args, runs the demo with serve as the
// service, prints the table to stdout and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, serve ServeFunc) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	cfg := Config{Serve: serve}
	fs.IntVar(&cfg.Rounds, "rounds", 5, "storms per server, each with a fresh token")
	fs.IntVar(&cfg.Concurrency, "concurrency", 200, "concurrent refreshes of the token in each storm")
	fs.BoolVar(&cfg.Pair, "pair", true, "pair the naive side's first two callers to find a token, as Node's event loop does; false: leave the race to timing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || cfg.Rounds < 1 || cfg.Concurrency < 1 {
		fmt.Fprintln(stderr, "authsvc demo: -rounds and -concurrency take numbers of at least 1, and nothing follows them")
		fs.Usage()
		return 2
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "authsvc demo:", err)
		return 1
	}
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, "authsvc demo:", err)
		return 1
	}
	return 0
}

const usage = `usage: authsvc demo [flags]

Shows the refresh race. On a throwaway SQLite database, starts the original
naive rotation (find, delete, create, no lock), the same under a per-token
mutex, and this service, on loopback ports; fires the same storms of
concurrent refreshes of one fresh token at each; prints one table.

flags:
`
