package tests

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the admin connection that terminates the service's ones
)

// faultConfig returns a config over a PostgreSQL schema of the test's own
// whose connections carry an application_name of their own, so that the test
// can terminate exactly them, and that name.
func faultConfig(t *testing.T) (appConfig, string) {
	t.Helper()
	u, err := url.Parse(postgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	name := "authsvc_fault_" + strings.ToLower(rand.Text()[:12])
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	cfg := defaultConfig()
	cfg.databaseURL = u.String()
	return cfg, name
}

// pgAdmin is a connection of the test's own to TEST_POSTGRES_URL's server.
func pgAdmin(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", os.Getenv("TEST_POSTGRES_URL"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// terminate ends every server connection whose application_name is name, as
// a failover, a restart or a pooler reset does, and returns how many it ended.
func terminate(ctx context.Context, admin *sql.DB, name string) (int, error) {
	var n int
	err := admin.QueryRowContext(ctx,
		`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&n)
	return n, err
}

// TestPostgresConnectionsTerminatedUnderLoad is the failover drill: clients
// chain refreshes, log in and register while every PostgreSQL connection of
// the instance is terminated, three times. Nobody may notice: no answer but
// 2xx, every client's last token still refreshes, and no token ever got two
// successors.
func TestPostgresConnectionsTerminatedUnderLoad(t *testing.T) {
	cfg, appName := faultConfig(t)
	a := newApp(t, cfg)
	admin := pgAdmin(t)

	const (
		clients      = 24
		terminations = 3
		opsBetween   = 150 // successful requests between two terminations
	)
	sessions := make([]session, clients)
	emails := make([]string, clients)
	for i := range sessions {
		sessions[i] = a.register(t)
		emails[i] = sessions[i].User["email"].(string)
	}

	stop := make(chan struct{})
	progress := make(chan struct{}, clients)
	failures := make(chan string, 10*clients)
	finals := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := sessions[i].RefreshToken
			defer func() { finals[i] = token }()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var what string
				var r response
				var err error
				switch {
				case i%4 == 0 && n%5 == 4:
					what = "login"
					r, err = a.postJSON("/auth/login", map[string]string{"email": emails[i], "password": "password123"})
				case i%4 == 1 && n%5 == 4:
					what = "register"
					email := fmt.Sprintf("fault%d-%d-%s@example.com", i, n, strings.ToLower(rand.Text()[:6]))
					r, err = a.postJSON("/auth/register", map[string]string{"email": email, "password": "password123"})
				default:
					what = "refresh"
					r, err = a.refresh(token)
				}
				if err != nil {
					failures <- fmt.Sprintf("client %d %s: %v", i, what, err)
					return
				}
				if r.Status/100 != 2 {
					failures <- fmt.Sprintf("client %d %s = %s", i, what, r)
					return
				}
				if what == "refresh" {
					var body struct{ RefreshToken string }
					if err := jsonUnmarshal(r.Body, &body); err != nil || body.RefreshToken == "" {
						failures <- fmt.Sprintf("client %d refresh answer %s: %v", i, r.Body, err)
						return
					}
					token = body.RefreshToken
				}
				select {
				case progress <- struct{}{}:
				case <-stop:
					return
				}
			}
		}()
	}

	var terminated []int
	var termErr error
	func() {
		defer close(stop)
		for range terminations {
			for range opsBetween {
				select {
				case <-progress:
				case f := <-failures:
					failures <- f // reported below
					return
				}
			}
			n, err := terminate(t.Context(), admin, appName)
			if err != nil {
				termErr = err
				return
			}
			terminated = append(terminated, n)
		}
		for range opsBetween { // load goes on after the last termination
			select {
			case <-progress:
			case f := <-failures:
				failures <- f
				return
			}
		}
	}()
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if termErr != nil {
		t.Fatalf("terminate the service's connections: %v", termErr)
	}
	t.Logf("connections terminated: %v; store operations retried: %d", terminated, a.DB.Retries())
	if len(terminated) != terminations {
		t.Fatalf("terminated %d times, want %d", len(terminated), terminations)
	}
	for i, n := range terminated {
		if n == 0 {
			t.Errorf("termination %d found no connection of the service to terminate", i+1)
		}
	}
	if a.DB.Retries() == 0 {
		t.Error("no store operation was retried: the terminations went unnoticed, so this test proved nothing")
	}
	if t.Failed() {
		return
	}

	for i, token := range finals {
		if r, err := a.refresh(token); err != nil || r.Status != http.StatusOK {
			t.Errorf("client %d: its last token no longer refreshes: %v %v", i, r, err)
		}
	}
	// Every rotated token has one successor, and it is the one it names.
	rows, err := admin.QueryContext(t.Context(), fmt.Sprintf(
		`SELECT p.id, count(c.id), count(c.id) FILTER (WHERE c.token_hash = p.successor_hash)
		FROM %s.refresh_tokens p LEFT JOIN %s.refresh_tokens c ON c.parent_id = p.id
		WHERE p.rotated_at IS NOT NULL GROUP BY p.id`, schemaOf(t, cfg.databaseURL), schemaOf(t, cfg.databaseURL)))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var rotated int
	for rows.Next() {
		var id, children, named int64
		if err := rows.Scan(&id, &children, &named); err != nil {
			t.Fatal(err)
		}
		rotated++
		if children != 1 || named != 1 {
			t.Errorf("token %d has %d successors, %d of them the one it names; want exactly 1", id, children, named)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rotated tokens checked", rotated)
}

// schemaOf returns the search_path of a postgresSchema URL.
func schemaOf(t *testing.T, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("search_path")
}

// TestPostgresUnreachableIs503 cuts an instance off its database for good:
// every request that needs it gets 503 with Retry-After, never 500, and the
// instance recovers by itself once the database is back.
func TestPostgresUnreachableIs503(t *testing.T) {
	cfg, _ := faultConfig(t)
	u, err := url.Parse(cfg.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	p := newTCPProxy(t, u.Host)
	u.Host = p.addr
	cfg.databaseURL = u.String()
	a := newApp(t, cfg)
	s := a.register(t)
	token := newToken(t, a.mustRefresh(t, s.RefreshToken))
	email := s.User["email"].(string)

	p.down()
	const want = `{"message":"Database unavailable, retry shortly","error":"Service Unavailable","statusCode":503}`
	requests := []struct {
		name string
		send func() (response, error)
	}{
		{"refresh", func() (response, error) { return a.refresh(token) }},
		{"login", func() (response, error) {
			return a.postJSON("/auth/login", map[string]string{"email": email, "password": "password123"})
		}},
		{"register", func() (response, error) {
			return a.postJSON("/auth/register", map[string]string{"email": "down-" + email, "password": "password123"})
		}},
		{"logout", func() (response, error) {
			return a.postJSON("/auth/logout", map[string]string{"refreshToken": token})
		}},
	}
	const rounds = 8 // concurrent requests of each kind
	type result struct {
		name string
		r    response
		err  error
	}
	results := make(chan result, rounds*len(requests))
	var wg sync.WaitGroup
	for range rounds {
		for _, req := range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := req.send()
				results <- result{req.name, r, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	for res := range results {
		switch {
		case res.err != nil:
			t.Errorf("%s while the database is down: %v", res.name, res.err)
		case res.r.Status != http.StatusServiceUnavailable || string(res.r.Body) != want:
			t.Errorf("%s while the database is down = %s, want 503 %s", res.name, res.r, want)
		case res.r.Header.Get("Retry-After") == "":
			t.Errorf("%s while the database is down: 503 without Retry-After", res.name)
		}
	}
	if logs := a.Logs.String(); strings.Contains(logs, token) || strings.Contains(logs, s.RefreshToken) {
		t.Error("a refresh token shows up in the log")
	}
	if t.Failed() {
		t.Logf("the instance's log:\n%s", a.Logs.String())
	}

	p.up(t)
	r := a.mustRefresh(t, token)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh once the database is back = %s, want 200", r)
	}
	newToken(t, a.mustRefresh(t, newToken(t, r)))
}

// tcpProxy forwards connections to a server; down cuts every connection and
// refuses new ones, up accepts them again on the same address.
type tcpProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
	wg           sync.WaitGroup
	accepted     atomic.Int64
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, s) {
				continue
			}
			p.wg.Add(2)
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
}

// track registers a connection pair, or closes it when the proxy went down meanwhile.
func (p *tcpProxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		s.Close()
		return false
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	return true
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// down closes the listener and resets every connection.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as a dead peer's network answers
		}
		c.Close()
	}
}

// up listens on the proxy's address again.
func (p *tcpProxy) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
