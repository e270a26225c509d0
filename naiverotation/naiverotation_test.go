package naiverotation_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
	"github.com/tokenrelay/authsvc/naiverotation"
)

// fixture is a service database with one user, and a way to give that user
// fresh refresh tokens.
type fixture struct {
	path string
	db   *models.DB
	user string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	db, err := models.Open(t.Context(), path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{path: path, db: db, user: uuid.NewString()}
	first, _ := f.row()
	u := &models.User{ID: f.user, Email: "naive@example.com", PasswordHash: strings.Repeat("x", 60), CreatedAt: time.Now().UTC()}
	if err := db.CreateUser(t.Context(), u, first); err != nil {
		t.Fatal(err)
	}
	return f
}

// row returns a new token's row, not yet stored, and the token.
func (f *fixture) row() (*models.RefreshToken, string) {
	token := rand.Text()
	h := sha256.Sum256([]byte(token))
	now := time.Now().UTC()
	return &models.RefreshToken{TokenHash: h[:], UserID: f.user, FamilyID: uuid.NewString(), ExpiresAt: now.Add(time.Hour), CreatedAt: now}, token
}

// token stores a fresh token and returns it.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	row, token := f.row()
	if err := f.db.CreateToken(t.Context(), row); err != nil {
		t.Fatal(err)
	}
	return token
}

func open(t *testing.T, path string, opts ...naiverotation.Option) *naiverotation.Store {
	t.Helper()
	s, err := naiverotation.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRotate: a rotation returns a working successor and consumes the token.
func TestRotate(t *testing.T) {
	f := newFixture(t)
	s := open(t, f.path)
	token := f.token(t)
	next, err := s.Rotate(t.Context(), token)
	if err != nil || next == "" || next == token {
		t.Fatalf("Rotate = %q, %v; want a new token", next, err)
	}
	if _, err := s.Rotate(t.Context(), token); !errors.Is(err, naiverotation.ErrInvalidToken) {
		t.Errorf("Rotate of the consumed token: %v, want ErrInvalidToken", err)
	}
	if _, err := s.Rotate(t.Context(), next); err != nil {
		t.Errorf("Rotate of the successor: %v, want a rotation", err)
	}
}

// storm calls rotate with token from n goroutines released together, and
// counts the outcomes: successes, gorm's record not found, ErrInvalidToken,
// and anything else.
func storm(n int, rotate naiverotation.Rotator, token string) (ok, notFound, invalid int, other []error) {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = rotate(context.Background(), token)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, gorm.ErrRecordNotFound):
			notFound++
		case errors.Is(err, naiverotation.ErrInvalidToken):
			invalid++
		default:
			other = append(other, err)
		}
	}
	return ok, notFound, invalid, other
}

// TestStormFailsWithRecordNotFound is the bug: of 300 concurrent rotations
// of one token, one succeeds and callers that found the row before it was
// deleted fail with gorm's record not found, from their own delete.
func TestStormFailsWithRecordNotFound(t *testing.T) {
	f := newFixture(t)
	pairs := &naiverotation.Pairs{} // no grace: a storm always brings the second finder
	s := open(t, f.path, naiverotation.WithAfterFind(pairs.Wait))
	for range 3 {
		ok, notFound, invalid, other := storm(300, s.Rotate, f.token(t))
		if ok != 1 || notFound < 1 || ok+notFound+invalid != 300 || len(other) > 0 {
			t.Errorf("ok %d, record not found %d, invalid %d, other %v; want 1 ok, at least 1 record not found, the rest invalid", ok, notFound, invalid, other)
		}
	}
}

// TestLockedWaitersAreLoggedOut: under a per-token mutex the 500s go, and
// every caller but the first finds the row gone.
func TestLockedWaitersAreLoggedOut(t *testing.T) {
	f := newFixture(t)
	l := naiverotation.Locked{Store: open(t, f.path), Locks: mutex.NewMemory(mutex.MemoryOptions{Timeout: time.Minute})}
	ok, notFound, invalid, other := storm(300, l.Rotate, f.token(t))
	if ok != 1 || notFound != 0 || invalid != 299 || len(other) > 0 {
		t.Errorf("ok %d, record not found %d, invalid %d, other %v; want 1 ok and 299 invalid", ok, notFound, invalid, other)
	}
}

// TestHandler: the HTTP shapes of an answer, a consumed token and a bad body.
func TestHandler(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(naiverotation.Handler(open(t, f.path).Rotate))
	t.Cleanup(srv.Close)
	token := f.token(t)
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"refreshToken":"` + token + `"}`, 200, `{"refreshToken":"`},
		{`{"refreshToken":"` + token + `"}`, 401, `"message":"Invalid refresh token"`},
		{`{"refreshToken":`, 400, `"statusCode":400`},
	} {
		resp, err := http.Post(srv.URL+"/auth/refresh", "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s; want %d with %s", c.body, resp.StatusCode, b, c.status, c.want)
		}
	}
}

// TestServerDoesNotImportIt: the bug stays out of the server. No package
// of the service depends on naiverotation; only the demo imports it.
func TestServerDoesNotImportIt(t *testing.T) {
	const self = "github.com/tokenrelay/authsvc/naiverotation"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "github.com/tokenrelay/authsvc/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		pkg, imports, _ := strings.Cut(strings.TrimSpace(line), " ")
		if pkg != "github.com/tokenrelay/authsvc/demo" && strings.Contains(" "+imports+" ", " "+self+" ") {
			t.Errorf("%s imports %s; only the demo may", pkg, self)
		}
	}
	out, err = exec.Command("go", "list", "-deps", "github.com/tokenrelay/authsvc/handlers").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if strings.Contains(string(out), self) {
		t.Errorf("the server's routes (package handlers) depend on %s", self)
	}
}
