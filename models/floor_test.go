package models

import (
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// BenchmarkSQLiteFloor measures the floor of one refresh on SQLite: one
// write transaction that marks a token row rotated and inserts its successor,
// through database/sql alone (no gorm, no HTTP, no crypto beyond the hash).
// The service's refresh throughput is reported as a ratio of it.
//
// It runs twice: with the service's synchronous=FULL (an fsync per commit,
// which group commit shares between rotations) and with synchronous=NORMAL
// (no fsync on commit in WAL mode), the faster of the two and the reference
// the service's rate is compared with: a floor the service's durability
// setting does not lower.
func BenchmarkSQLiteFloor(b *testing.B) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		b.Run("synchronous="+sync, func(b *testing.B) { sqliteFloor(b, sync) })
	}
}

func sqliteFloor(b *testing.B, synchronous string) {
	path := filepath.Join(b.TempDir(), "floor.db")
	// The service's own schema, indexes included: they are part of a write's cost.
	if _, err := Migrate(b.Context(), path, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	dsn, err := sqliteDSN(path)
	if err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA synchronous = " + synchronous); err != nil {
		b.Fatal(err)
	}
	hash := func() []byte { h := sha256.Sum256([]byte(rand.Text())); return h[:] }
	now := time.Now().UTC()
	res, err := db.Exec(`INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) VALUES (?, 'u', 'f', ?, ?)`,
		hash(), now.Add(time.Hour), now)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := res.LastInsertId()
	sealed := make([]byte, 71)

	b.ReportAllocs()
	for b.Loop() {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		next := hash()
		if _, err := tx.Exec(`UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_sealed = ?
			WHERE id = ? AND rotated_at IS NULL AND revoked_at IS NULL`, now, next, sealed, id); err != nil {
			b.Fatal(err)
		}
		res, err := tx.Exec(`INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
			VALUES (?, 'u', 'f', ?, ?, ?)`, next, id, now.Add(time.Hour), now)
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		id, _ = res.LastInsertId()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}
