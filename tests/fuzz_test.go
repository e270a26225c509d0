package tests

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

// fuzzTarget is a service for a fuzz target: its own SQLite file, one
// registered user, and no log kept (a fuzzer's millions of requests would
// fill the memory of newApp's log buffer).
type fuzzTarget struct {
	svc     *auth.Service
	rows    *sql.DB // the service's database, for counts of stored rows
	handler http.Handler
	now     time.Time
	session auth.Session
}

func newFuzzTarget(f *testing.F) *fuzzTarget {
	f.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	path := filepath.Join(f.TempDir(), "auth.db")
	db, err := models.Open(ctx, path, log)
	if err != nil {
		f.Fatalf("models.Open: %v", err)
	}
	f.Cleanup(func() { db.Close() })
	now := time.Now()
	registry := prometheus.NewRegistry()
	locks := mutex.NewMemory(mutex.MemoryOptions{Timeout: 5 * time.Second})
	svc, err := auth.NewService(db, locks, auth.Config{
		Secret: []byte(testSecret), ReuseWindow: 10 * time.Second, BcryptCost: bcrypt.MinCost,
		Now: func() time.Time { return now }, Logger: log, Metrics: auth.NewMetrics(registry),
	})
	if err != nil {
		f.Fatalf("auth.NewService: %v", err)
	}
	sess, err := svc.Register(ctx, "fuzz@example.com", "password123", nil)
	if err != nil {
		f.Fatalf("register: %v", err)
	}
	e := handlers.NewServer(handlers.Deps{Auth: svc, DB: db, Locks: locks, Registry: registry, Logger: log})
	return &fuzzTarget{svc: svc, rows: openSQL(f, path), handler: e, now: now, session: sess}
}

// counts are the users, tokens and active tokens stored.
func (ft *fuzzTarget) counts(t *testing.T) [3]int64 {
	t.Helper()
	var c [3]int64
	c[0], c[1], c[2] = rowCounts(t, ft.rows)
	return c
}

// FuzzAuthenticate gives the access-token verifier any string: it never
// panics, any refusal is ErrUnauthorized, and a token it accepts verifies
// as golang-jwt's own HS256 parser reads it, for the user its sub names.
func FuzzAuthenticate(f *testing.F) {
	ft := newFuzzTarget(f)
	tok := ft.session.AccessToken
	dot := strings.LastIndexByte(tok, '.')
	signed := func(method jwt.SigningMethod, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString([]byte(testSecret))
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	exp := ft.now.Add(time.Hour).Unix()
	id := ft.session.User.ID
	for _, seed := range []string{
		tok, tok[:dot], tok + "x", strings.ToUpper(tok), "", ".", "..", "a.b.c", "a.b.c.d", "\xff.\xfe.\xfd",
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": id, "exp": exp}),
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": id, "exp": "9999999999"}),
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": id, "exp": ft.now.Add(-time.Hour).Unix()}),
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": id, "nbf": exp}),
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": 1, "exp": exp}),
		signed(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "00000000-0000-0000-0000-000000000000"}),
		signed(jwt.SigningMethodHS512, jwt.MapClaims{"sub": id}),
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+id+`"}`)) + ".",
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("[", 5000))) + ".x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		u, err := ft.svc.Authenticate(context.Background(), token)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("Authenticate(%q) = %v, want ErrUnauthorized", token, err)
			}
			return
		}
		claims := jwt.MapClaims{}
		_, err = jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return ft.now })).
			ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil })
		if err != nil {
			t.Fatalf("Authenticate(%q) accepted a token golang-jwt refuses: %v", token, err)
		}
		if sub, _ := claims["sub"].(string); sub != u.ID || u.ID != id {
			t.Fatalf("Authenticate(%q) = user %q, the token's sub %v, the only user %q", token, u.ID, claims["sub"], id)
		}
	})
}

// FuzzRefreshToken gives Refresh and Logout any string: Refresh returns
// ErrInvalidToken, Logout nothing, neither panics, and no row changes (the
// one live token stays live).
func FuzzRefreshToken(f *testing.F) {
	ft := newFuzzTarget(f)
	live := ft.session.RefreshToken
	for _, seed := range []string{
		"", " ", "garbage", live[:len(live)-1], live + "x", strings.ToUpper(live), "\x00", "\xff\xfe", "😀",
		strings.Repeat("a", 10_000), "' OR 1=1 --", "%", "_", `\x`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if token == live {
			return
		}
		ctx := context.Background()
		before := ft.counts(t)
		if _, err := ft.svc.Refresh(ctx, token); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Refresh(%q) = %v, want ErrInvalidToken", token, err)
		}
		if err := ft.svc.Logout(ctx, token); err != nil {
			t.Fatalf("Logout(%q) = %v, want nil", token, err)
		}
		if after := ft.counts(t); after != before {
			t.Fatalf("Refresh and Logout of %q changed users, tokens, active tokens from %v to %v", token, before, after)
		}
	})
}

// FuzzServer sends any request body, with any Content-Type,
// Content-Encoding and Authorization, to any endpoint of the real server:
// it never answers 5xx; a refusal is a NestJS body whose statusCode is
// its status, under 8 KB; and a refusal changes no row.
func FuzzServer(f *testing.F) {
	ft := newFuzzTarget(f)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"refreshToken":"x"}`))
	zw.Close()
	for _, seed := range []struct {
		route           uint8
		ctype, encoding string
		body            string
		authorization   string
	}{
		{0, ctJSON, "", `{"email":"new@example.com","password":"password123"}`, ""},
		{1, ctJSON, "", `{"email":"fuzz@example.com","password":"password123"}`, ""},
		{2, ctJSON, "", `{"refreshToken":"x","foo":1}`, ""},
		{3, ctJSON, "", `{"refreshToken":"x"}`, ""},
		{4, "", "", "", "Bearer " + ft.session.AccessToken},
		{2, ctJSON, "gzip", gz.String(), ""},
		{2, ctForm, "", "refreshToken=x&a[b]=1", ""},
		{0, ctJSON + "; charset=utf-16le", "", "{\x00}\x00", ""},
		{2, "text/plain", "", `{"refreshToken":"x"}`, ""},
		{2, ctJSON, "", `{"2":1,"1":1,"__proto__":{}}`, ""},
		{2, ctJSON, "", strings.Repeat("[", 100), ""},
	} {
		f.Add(seed.route, seed.ctype, seed.encoding, []byte(seed.body), seed.authorization)
	}
	routes := []struct{ method, path string }{
		{http.MethodPost, "/auth/register"}, {http.MethodPost, "/auth/login"}, {http.MethodPost, "/auth/refresh"},
		{http.MethodPost, "/auth/logout"}, {http.MethodGet, "/auth/me"},
	}
	f.Fuzz(func(t *testing.T, route uint8, ctype, encoding string, body []byte, authorization string) {
		r := routes[int(route)%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		for name, v := range map[string]string{"Content-Type": ctype, "Content-Encoding": encoding, "Authorization": authorization} {
			if v != "" {
				req.Header.Set(name, v)
			}
		}
		before := ft.counts(t)
		rec := httptest.NewRecorder()
		ft.handler.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%s %s (%q, %q, %q) = %d %s", r.method, r.path, ctype, encoding, body, rec.Code, rec.Body)
		case rec.Code < 400:
			return // a session, new tokens, a logout, the user
		}
		if rec.Body.Len() >= maxRefusal {
			t.Fatalf("%s %s (%q, %q, %q): answer of %d bytes", r.method, r.path, ctype, encoding, body, rec.Body.Len())
		}
		var answer struct {
			StatusCode int
			Message    json.RawMessage
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || answer.StatusCode != rec.Code || len(answer.Message) == 0 {
			t.Fatalf("%s %s (%q, %q, %q) = %d %s: not a NestJS refusal", r.method, r.path, ctype, encoding, body, rec.Code, rec.Body)
		}
		if after := ft.counts(t); after != before {
			t.Fatalf("%s %s (%q, %q, %q) = %d, but users, tokens, active tokens went from %v to %v",
				r.method, r.path, ctype, encoding, body, rec.Code, before, after)
		}
	})
}
