// Package tests holds black-box tests of the service: each builds the real
// server through handlers.NewServer over a real database and talks to it over
// HTTP.
package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for openSQL
	_ "github.com/mattn/go-sqlite3"    // the "sqlite3" driver, for openSQL
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/internal/testpg"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
	"github.com/tokenrelay/authsvc/openapi/openapitest"
)

const testSecret = "test-secret-do-not-use"

// app is one running service: a real HTTP server over a fresh database.
type app struct {
	URL         string
	DatabaseURL string
	DB          *models.DB
	Locks       locker
	Registry    *prometheus.Registry
	Logs        *syncBuffer
	Clock       *clock
	Server      *httptest.Server
	rows        *sql.DB // reads the tables directly, for the tests' counts of stored rows
	client      *http.Client
	contract    *openapitest.Transport // client's: checks every answer against the OpenAPI document; nil in benchmarks
}

type appConfig struct {
	databaseURL string // "" : a fresh SQLite file
	reuseWindow time.Duration
	lockTimeout time.Duration
	redis       *redis.Client // nil: the in-process lock
	redisPrefix string        // the Redis lock's key prefix, shared by a test's instances
	accessTTL   time.Duration
	refreshTTL  time.Duration
	clockSkew   time.Duration // how far this instance's own clock is off
	dbClock     bool          // judge token times by the database's clock, as main does
	// throttle limits logins and registrations; nil (the default) does not:
	// these tests register many users from one address.
	throttle       *handlers.Throttle
	trustedProxies []*net.IPNet
	hasher         auth.PasswordHasher // bcrypt at its minimum cost when nil
	hashing        auth.HashingConfig  // a long wait for a turn when zero: a test's burst is no flood
	cors           handlers.CORS
	behindTLS      bool
}

func defaultConfig() appConfig {
	return appConfig{reuseWindow: 10 * time.Second, lockTimeout: 5 * time.Second, accessTTL: 15 * time.Minute, refreshTTL: 7 * 24 * time.Hour}
}

// newApp starts a service for one test; it stops with the test.
func newApp(t testing.TB, cfg appConfig) *app {
	t.Helper()
	if cfg.databaseURL == "" {
		cfg.databaseURL = filepath.Join(t.TempDir(), "auth.db")
	}
	return startInstance(t, cfg, newClock())
}

// startInstance starts one service instance over cfg's database, with its own
// lock, singleflight, metrics and log, as one process would have.
func startInstance(t testing.TB, cfg appConfig, clk *clock) *app {
	t.Helper()
	logs := &syncBuffer{}
	log := newLogger(logs)
	registry := prometheus.NewRegistry()
	// Eight PostgreSQL connections per instance (the service's default is 20):
	// tests run in parallel, and beside other packages' tests, on a server
	// that allows 100 connections in all.
	db, err := models.Open(t.Context(), cfg.databaseURL, log, models.OnGroupCommit(auth.NewCommitMetrics(registry)), models.MaxConns(8))
	if err != nil {
		t.Fatalf("models.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	rows := openSQL(t, cfg.databaseURL)

	var locks locker = mutex.NewMemory(mutex.MemoryOptions{Timeout: cfg.lockTimeout})
	var lockCheck handlers.Pinger
	if cfg.redis != nil {
		r := mutex.NewRedis(cfg.redis, mutex.RedisOptions{Timeout: cfg.lockTimeout, Prefix: cfg.redisPrefix})
		locks, lockCheck = r, r
	}
	now := func() time.Time { return clk.Now().Add(cfg.clockSkew) }
	if cfg.dbClock {
		c := db.Clock(now)
		if _, err := c.Sync(t.Context()); err != nil {
			t.Fatalf("Clock.Sync: %v", err)
		}
		now = c.Now
	}
	hashing := cfg.hashing
	if hashing == (auth.HashingConfig{}) {
		hashing = auth.HashingConfig{Queue: 1 << 20, Wait: time.Minute}
	}
	svc, err := auth.NewService(db, locks, auth.Config{
		Secret:      []byte(testSecret),
		AccessTTL:   cfg.accessTTL,
		RefreshTTL:  cfg.refreshTTL,
		ReuseWindow: cfg.reuseWindow,
		BcryptCost:  bcrypt.MinCost, // the cost is bcrypt's business, not these tests'
		Hasher:      cfg.hasher,
		Hashing:     hashing,
		Now:         now,
		Logger:      log,
		Metrics:     auth.NewMetrics(registry),
	})
	if err != nil {
		t.Fatalf("auth.NewService: %v", err)
	}
	e := handlers.NewServer(handlers.Deps{Auth: svc, DB: db, Lock: lockCheck, Locks: locks, Registry: registry, Logger: log,
		Throttle: cfg.throttle, TrustedProxies: cfg.trustedProxies, CORS: cfg.cors, BehindTLS: cfg.behindTLS})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	client, contract := contractClient(t)
	return &app{
		URL: srv.URL, DatabaseURL: cfg.databaseURL, DB: db, Locks: locks, Registry: registry, Logs: logs, Clock: clk, Server: srv,
		rows: rows, client: client, contract: contract,
	}
}

// locker is the lock of an instance: *mutex.Memory or *mutex.Redis.
type locker interface {
	WithLock(ctx context.Context, key string, fn func(context.Context) error) error
	ActiveLockCount() int
	IsLocked(key string) bool
}

// redisConfig returns cfg with a Redis lock on TEST_REDIS_URL under a prefix
// of this test's own, or skips the test.
func redisConfig(t testing.TB, cfg appConfig) appConfig {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	cfg.redis = redis.NewClient(opts)
	t.Cleanup(func() { cfg.redis.Close() })
	cfg.redisPrefix = "authsvc-test:" + strings.ToLower(rand.Text()[:10]) + ":"
	return cfg
}

// databases runs fn once per database under test: SQLite always, PostgreSQL
// when TEST_POSTGRES_URL names a server.
func databases(t *testing.T, fn func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "") })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresSchema(t)) })
}

// postgresSchema returns a URL of TEST_POSTGRES_URL's server whose
// search_path is a schema of this test's own, dropped when the test ends.
func postgresSchema(t *testing.T) string {
	t.Helper()
	u, _ := testpg.Schema(t)
	return u
}

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// json decodes the body into a fresh map.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// do sends a request; a transport error is returned, not fatal, so that
// goroutines can report it.
func (a *app) do(method, path, contentType string, body io.Reader, header ...string) (response, error) {
	req, err := http.NewRequest(method, a.URL+path, body)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := a.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, err
}

// postJSON posts v (a string is sent as it is) as application/json.
func (a *app) postJSON(path string, v any) (response, error) {
	var b []byte
	if s, ok := v.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return response{}, err
		}
	}
	return a.do(http.MethodPost, path, "application/json", bytes.NewReader(b))
}

func (a *app) mustPost(t testing.TB, path string, v any) response {
	t.Helper()
	r, err := a.postJSON(path, v)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

type session struct {
	User         map[string]any
	AccessToken  string
	RefreshToken string
}

var userSeq atomic.Int64

// register creates a fresh user and returns its session.
func (a *app) register(t testing.TB) session {
	t.Helper()
	email := fmt.Sprintf("user%d-%s@example.com", userSeq.Add(1), strings.ToLower(rand.Text()[:6]))
	r := a.mustPost(t, "/auth/register", map[string]any{"email": email, "password": "password123"})
	if r.Status != http.StatusCreated {
		t.Fatalf("register: %s", r)
	}
	m := r.json(t)
	return session{User: m["user"].(map[string]any), AccessToken: m["accessToken"].(string), RefreshToken: m["refreshToken"].(string)}
}

// refresh posts a refresh and returns the answer.
func (a *app) refresh(token string) (response, error) {
	return a.postJSON("/auth/refresh", map[string]string{"refreshToken": token})
}

func (a *app) mustRefresh(t testing.TB, token string) response {
	t.Helper()
	r, err := a.refresh(token)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return r
}

// newToken returns the refresh token of a 200 refresh answer, or stops the
// test. Goroutines other than the test's use tokenOf.
func newToken(t testing.TB, r response) string {
	t.Helper()
	tok, err := tokenOf(r)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenOf returns the refresh token of a 200 refresh answer, or an error
// that says what the answer was instead.
func tokenOf(r response) (string, error) {
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("refresh = %s, want 200", r)
	}
	var body struct {
		RefreshToken string `json:"refreshToken"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.RefreshToken == "" {
		return "", fmt.Errorf("refresh answer %s has no refreshToken", r.Body)
	}
	return body.RefreshToken, nil
}

// counter reads a counter of the app's registry.
func (a *app) counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := a.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// familyRows counts the stored refresh tokens of the family of token.
func (a *app) familyRows(t testing.TB, token string) int64 {
	t.Helper()
	h := sha256.Sum256([]byte(token))
	var n int64
	err := a.rows.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM refresh_tokens WHERE family_id =
		(SELECT family_id FROM refresh_tokens WHERE token_hash = $1)`, h[:]).Scan(&n)
	if err != nil {
		t.Fatalf("count family rows: %v", err)
	}
	return n
}

// openSQL opens a database/sql pool of its own on the database that url
// names (a PostgreSQL URL or an SQLite file), closed when the test ends.
// Tests count stored rows through it, as an operator would look at the
// tables, not through the service's own models. Its queries write
// placeholders as $1, which both databases read.
func openSQL(t testing.TB, url string) *sql.DB {
	t.Helper()
	driver := "sqlite3"
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		driver = "pgx"
	}
	db, err := sql.Open(driver, url)
	if err != nil {
		t.Fatalf("open %s: %v", driver, err)
	}
	db.SetMaxOpenConns(1) // the server's connections are shared by every test: counting needs one
	t.Cleanup(func() { db.Close() })
	return db
}

// rowCounts counts the stored users and refresh tokens of db, and the
// tokens still active (not revoked), for tests that a request left them
// alone.
func rowCounts(t testing.TB, db *sql.DB) (users, tokens, active int64) {
	t.Helper()
	err := db.QueryRowContext(t.Context(), `SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM refresh_tokens),
		(SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL)`).Scan(&users, &tokens, &active)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return users, tokens, active
}

// lockKey is the lock key of a refresh token, as the service builds it.
func lockKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return "refresh_token_" + hex.EncodeToString(h[:])
}

// clock is a settable clock for the service.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newHTTPServer serves h for one test, with the app's client settings.
func newHTTPServer(t testing.TB, h http.Handler) *app {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &app{URL: srv.URL, Server: srv, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}, Timeout: 30 * time.Second}}
}

// newLogger logs everything, debug included, to w: tests read it for what
// must never be there.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("body %q: %w", b, err)
	}
	return nil
}

// activeInFamily counts the tokens of token's family that are not revoked.
func (a *app) activeInFamily(t testing.TB, token string) int64 {
	t.Helper()
	h := sha256.Sum256([]byte(token))
	var n int64
	err := a.rows.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL AND family_id =
		(SELECT family_id FROM refresh_tokens WHERE token_hash = $1)`, h[:]).Scan(&n)
	if err != nil {
		t.Fatalf("count active tokens: %v", err)
	}
	return n
}

// rowCounts counts the app's stored users, refresh tokens and active tokens.
func (a *app) rowCounts(t testing.TB) (users, tokens, active int64) {
	t.Helper()
	return rowCounts(t, a.rows)
}
