package models

import (
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointerCopiesTheWAL: with automatic checkpoints off, the rows of
// committed rotations reach the database file itself (read with
// immutable=1, which ignores the WAL) only if the checkpointer copies them
// there while the database is open.
func TestCheckpointerCopiesTheWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db := openAt(t, path)
	ctx := t.Context()
	now := time.Now().UTC()
	const rotations = 200
	parent := RefreshToken{TokenHash: []byte("t0"), UserID: "u1", FamilyID: "f1", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := db.CreateUser(ctx, &User{ID: "u1", Email: "a@example.com", PasswordHash: "x", CreatedAt: now}, &parent); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= rotations; i++ {
		next := &RefreshToken{TokenHash: fmt.Appendf(nil, "t%d", i), UserID: "u1", FamilyID: "f1", ParentID: &parent.ID,
			ExpiresAt: now.Add(time.Hour), CreatedAt: now}
		if err := db.Rotate(ctx, parent.ID, now, []byte("sealed"), next); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		st, err := db.TokenByHash(ctx, next.TokenHash)
		if err != nil {
			t.Fatal(err)
		}
		parent.ID = st.ID
	}

	file, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	file.SetMaxOpenConns(1)
	// Polled: the checkpointer runs every checkpointInterval. The bound is
	// not a speed asked of it, only an end to waiting for one that never
	// runs: 300 of its intervals.
	giveUp := time.After(300 * checkpointInterval)
	var inFile int
	for inFile < rotations+1 {
		// A new connection each time: an immutable database is not re-read.
		file.SetMaxIdleConns(0)
		if err := file.QueryRowContext(ctx, "SELECT count(*) FROM refresh_tokens").Scan(&inFile); err != nil {
			inFile = 0 // the file has no table yet: the schema is still in the WAL
		}
		select {
		case <-giveUp:
			t.Fatalf("the database file holds %d of %d tokens: the WAL was not checkpointed", inFile, rotations+1)
		case <-time.After(checkpointInterval):
		}
	}
}

func openAt(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(t.Context(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
