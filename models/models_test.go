package models

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "auth.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"auth.db", "auth.db?_busy_timeout=10000&_foreign_keys=on&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"},
		{"sqlite://data/auth.db", "data/auth.db?_busy_timeout=10000&_foreign_keys=on&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"},
		{"file:auth.db?_synchronous=NORMAL", "file:auth.db?_busy_timeout=10000&_foreign_keys=on&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate"},
	} {
		if got, err := sqliteDSN(tc.in); err != nil || got != tc.want {
			t.Errorf("sqliteDSN(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{":memory:", "file:x?mode=memory&cache=shared", ""} {
		if _, err := sqliteDSN(in); err == nil || !strings.Contains(err.Error(), "memory") {
			t.Errorf("sqliteDSN(%q) = %v, want an error about in-memory databases", in, err)
		}
	}
}

func TestRotateIsCompareAndSwap(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	u := User{ID: "u1", Email: "a@example.com", PasswordHash: "x", CreatedAt: now}
	first := RefreshToken{TokenHash: []byte("h0"), UserID: "u1", FamilyID: "f1", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := db.CreateUser(ctx, &u, &first); err != nil {
		t.Fatal(err)
	}
	next := func(h string) *RefreshToken {
		return &RefreshToken{TokenHash: []byte(h), UserID: "u1", FamilyID: "f1", ParentID: &first.ID, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	}
	if err := db.Rotate(ctx, first.ID, now, []byte("sealed"), next("h1")); err != nil {
		t.Fatalf("first Rotate = %v", err)
	}
	if err := db.Rotate(ctx, first.ID, now, []byte("sealed"), next("h2")); !errors.Is(err, ErrConflict) {
		t.Fatalf("second Rotate of the same token = %v, want ErrConflict", err)
	}
	if _, err := db.TokenByHash(ctx, []byte("h2")); !errors.Is(err, ErrNotFound) {
		t.Errorf("the losing rotation stored its successor: %v", err)
	}
	st, err := db.TokenByHash(ctx, []byte("h0"))
	if err != nil || st.RotatedAt == nil || string(st.SuccessorHash) != "h1" || !st.SuccessorActive(now) || st.Email != "a@example.com" {
		t.Errorf("TokenByHash(rotated) = %+v, %v", st, err)
	}
	if err := db.RevokeFamily(ctx, "f1", now); err != nil {
		t.Fatal(err)
	}
	if st, _ := db.TokenByHash(ctx, []byte("h0")); st.SuccessorActive(now) || st.RevokedAt == nil {
		t.Errorf("after RevokeFamily: %+v", st)
	}
	if err := db.Rotate(ctx, st.ID, now, nil, next("h3")); !errors.Is(err, ErrConflict) {
		t.Errorf("Rotate of a revoked token = %v, want ErrConflict", err)
	}
}

func TestCreateUserDuplicateLeavesNothing(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	tok := func(h string) *RefreshToken {
		return &RefreshToken{TokenHash: []byte(h), FamilyID: "f", ExpiresAt: now, CreatedAt: now}
	}
	a := User{ID: "a", Email: "same@example.com", PasswordHash: "x", CreatedAt: now}
	if err := db.CreateUser(ctx, &a, withUser(tok("ha"), "a")); err != nil {
		t.Fatal(err)
	}
	b := User{ID: "b", Email: "same@example.com", PasswordHash: "x", CreatedAt: now}
	if err := db.CreateUser(ctx, &b, withUser(tok("hb"), "b")); !errors.Is(err, ErrDuplicateEmail) {
		t.Fatalf("CreateUser(duplicate email) = %v, want ErrDuplicateEmail", err)
	}
	if _, err := db.UserByID(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByID(b) = %v, want ErrNotFound", err)
	}
	// A failure after the user row (here, a duplicate token hash) rolls the user back too.
	c := User{ID: "c", Email: "c@example.com", PasswordHash: "x", CreatedAt: now}
	if err := db.CreateUser(ctx, &c, withUser(tok("ha"), "c")); err == nil {
		t.Fatal("CreateUser with a duplicate token hash succeeded")
	}
	if _, err := db.UserByEmail(ctx, "c@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed registration left its user behind: %v", err)
	}
}

func withUser(t *RefreshToken, id string) *RefreshToken { t.UserID = id; return t }

// TestGroupCommit rotates 300 tokens from 300 goroutines at once, so that
// rotations share transactions: 100 tokens twice over (one of each pair must
// lose the compare-and-swap), and one rotation whose insert fails. Every
// rotation gets its own right answer; the failing one fails alone.
func TestGroupCommit(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	const tokens = 200
	ids := seedTokens(t, db, tokens)
	type call struct {
		token int
		hash  string
	}
	var calls []call
	for i := range tokens - 1 {
		calls = append(calls, call{i, fmt.Sprintf("n%d", i)})
		if i < 100 {
			calls = append(calls, call{i, fmt.Sprintf("n%d-rival", i)})
		}
	}
	calls = append(calls, call{tokens - 1, "t3"}) // t3 exists: this insert violates the unique index

	start := make(chan struct{})
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			<-start
			next := &RefreshToken{TokenHash: []byte(c.hash), UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			errs[i] = db.Rotate(ctx, ids[c.token], now, []byte("sealed"), next)
		})
	}
	close(start)
	wg.Wait()

	wins := map[int]int{}
	for i, c := range calls {
		switch err := errs[i]; {
		case c.hash == "t3":
			if err == nil || errors.Is(err, ErrConflict) {
				t.Errorf("the rotation with a duplicate successor = %v, want a failure of its own", err)
			}
		case err == nil:
			wins[c.token]++
		case !errors.Is(err, ErrConflict):
			t.Errorf("Rotate(token %d) = %v", c.token, err)
		}
	}
	for i := range tokens - 1 {
		if wins[i] != 1 {
			t.Errorf("token %d rotated %d times, want 1", i, wins[i])
		}
	}
	var rows int64
	db.write.Raw("SELECT COUNT(*) FROM refresh_tokens").Scan(&rows)
	if want := int64(2*tokens - 1); rows != want {
		t.Errorf("%d rows, want %d (each token, and a successor for all but the failed one)", rows, want)
	}
	if groups := db.rotations.commits.Load(); groups >= int64(len(calls)) {
		t.Errorf("%d groups for %d rotations: nothing was committed together", groups, len(calls))
	}
	if st, err := db.TokenByHash(ctx, []byte(fmt.Sprintf("t%d", tokens-1))); err != nil || st.RotatedAt != nil {
		t.Errorf("the token whose rotation failed: %+v, %v; want it unrotated", st, err)
	}
}

func TestPruneExpired(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	u := User{ID: "u", Email: "p@example.com", PasswordHash: "x", CreatedAt: now}
	tok := func(h string, expires time.Time) *RefreshToken {
		return &RefreshToken{TokenHash: []byte(h), UserID: "u", FamilyID: "f", ExpiresAt: expires, CreatedAt: now}
	}
	if err := db.CreateUser(ctx, &u, tok("live", now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	for i := range 2500 { // more than one batch
		if err := db.CreateToken(ctx, tok(fmt.Sprintf("old%d", i), now.Add(-time.Duration(i+1)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateToken(ctx, tok("just-live", now.Add(time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneExpired(ctx, now)
	if err != nil || n != 2500 {
		t.Fatalf("PruneExpired = %d, %v; want 2500, nil", n, err)
	}
	for _, h := range []string{"live", "just-live"} {
		if _, err := db.TokenByHash(ctx, []byte(h)); err != nil {
			t.Errorf("token %q that has not expired: %v", h, err)
		}
	}
	if n, err := db.PruneExpired(ctx, now); err != nil || n != 0 {
		t.Errorf("second PruneExpired = %d, %v; want 0, nil", n, err)
	}
}

// TestEraseSeals: seals of tokens rotated before the cutoff are erased, in
// batches; later ones stay, and so does everything else of the rows.
func TestEraseSeals(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	u := User{ID: "u", Email: "seal@example.com", PasswordHash: "x", CreatedAt: now}
	tok := func(h string) *RefreshToken {
		return &RefreshToken{TokenHash: []byte(h), UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	}
	if err := db.CreateUser(ctx, &u, tok("t0")); err != nil {
		t.Fatal(err)
	}
	const old = 1500 // more than one batch
	rotate := func(i int, at time.Time) {
		t.Helper()
		st, err := db.TokenByHash(ctx, []byte(fmt.Sprintf("t%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Rotate(ctx, st.ID, at, []byte("sealed"), tok(fmt.Sprintf("t%d", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range old {
		rotate(i, now.Add(-time.Minute))
	}
	rotate(old, now) // within the window

	n, err := db.EraseSeals(ctx, now.Add(-10*time.Second))
	if err != nil || n != old {
		t.Fatalf("EraseSeals = %d, %v; want %d, nil", n, err, old)
	}
	st, err := db.TokenByHash(ctx, []byte("t0"))
	if err != nil || st.SuccessorSealed != nil || st.RotatedAt == nil || st.SuccessorHash == nil {
		t.Errorf("a token rotated before the cutoff: sealed %q, rotated %v, successor hash %x; want no seal, the rest kept", st.SuccessorSealed, st.RotatedAt, st.SuccessorHash)
	}
	if st, err := db.TokenByHash(ctx, []byte(fmt.Sprintf("t%d", old))); err != nil || string(st.SuccessorSealed) != "sealed" {
		t.Errorf("the token rotated within the window lost its seal: %q, %v", st.SuccessorSealed, err)
	}
	if n, err := db.EraseSeals(ctx, now.Add(-10*time.Second)); err != nil || n != 0 {
		t.Errorf("second EraseSeals = %d, %v; want 0, nil", n, err)
	}
}

// TestGroupCommitSurvivesPanic: a panic while a group commits reaches the
// caller of the rotation, and the next rotation finds a working committer
// rather than one that never comes back.
func TestGroupCommitSurvivesPanic(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	now := time.Now().UTC()
	u := User{ID: "u", Email: "panic@example.com", PasswordHash: "x", CreatedAt: now}
	first := &RefreshToken{TokenHash: []byte("h0"), UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := db.CreateUser(ctx, &u, first); err != nil {
		t.Fatal(err)
	}
	next := func(h string) *RefreshToken {
		return &RefreshToken{TokenHash: []byte(h), UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	}

	good := db.hot.casRotated
	db.hot.casRotated = nil // tx.StmtContext(ctx, nil) panics
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		_ = db.Rotate(ctx, first.ID, now, nil, next("h1"))
	}()
	db.hot.casRotated = good

	done := make(chan error, 1)
	go func() { done <- db.Rotate(ctx, first.ID, now, nil, next("h2")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Rotate after the panic = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Rotate after a panic hangs: the committer died")
	}
}

// The database file and its WAL files are readable by their owner only,
// where the usual umask (022) would leave them readable by every local user.
func TestSQLiteFilesArePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.db")
	db, err := Open(t.Context(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateToken(t.Context(), &RefreshToken{TokenHash: []byte("h"), UserID: "u", FamilyID: "f", ExpiresAt: time.Now(), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err) // a write, so that the WAL exists
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(f)
		if err != nil {
			t.Errorf("stat %s: %v", f, err)
			continue
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", filepath.Base(f), perm)
		}
	}
}
