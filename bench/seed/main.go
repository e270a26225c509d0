// Command seed fills an authsvc SQLite database with rotated refresh-token
// rows, so that bench/sqlite.sh can measure refreshes against a table of
// millions of rows: what a service that has run for a while holds, since
// every refresh keeps its rotated row for reuse detection until it expires.
//
//	go run ./bench/seed -rows 1000000 path/to/auth.db
//
// The schema must exist: run `authsvc migrate` on the file first (or start
// the service on it once and stop it), seed, then start the service. The
// rows go in with one INSERT of a recursive CTE in one transaction, about
// 5 s per million rows: each has a random token and successor hash (the
// unique index is as scattered as real tokens make it), is spread over
// -users users and families of -chain rows, was rotated an hour ago and
// expires in a week, so the service neither prunes it at start nor finds a
// seal to erase.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "rotated rows to insert")
	users := flag.Int("users", 10_000, "users the rows are spread over")
	chain := flag.Int("chain", 100, "rows per token family")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: seed [flags] path/to/auth.db")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *rows < 1 || *users < 1 || *chain < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := seed(flag.Arg(0), *rows, *users, *chain); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func seed(path string, rows, users, chain int) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w (run authsvc migrate on it first)", err)
	}
	// No fsync while seeding (a crash means seeding again), and a page cache
	// of up to 1 GiB: the inserts into the unique index of random hashes
	// land all over it. The service reopens the file with its own pragmas.
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=OFF&_busy_timeout=10000&_cache_size=-1048576")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'refresh_tokens'`).Scan(&n); err != nil || n == 0 {
		return fmt.Errorf("%s has no refresh_tokens table (run authsvc migrate on it first): %v", path, err)
	}
	start := time.Now()
	now := time.Now().UTC()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Times are bound as time.Time, so the driver writes them as it writes
	// the service's own.
	if _, err := tx.Exec(`WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x + 1 < ?)
		INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at, rotated_at, successor_hash)
		SELECT randomblob(32), 'seed-user-' || (x / ? % ?), 'seed-family-' || (x / ?), ?, ?, ?, randomblob(32) FROM n`,
		rows, chain, users, chain, now.Add(7*24*time.Hour), now.Add(-time.Hour), now.Add(-time.Hour)); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Fold the WAL into the file, so the service starts on a checkpointed database.
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var total int
	if err := db.QueryRow(`SELECT count(*) FROM refresh_tokens`).Scan(&total); err != nil {
		return err
	}
	fmt.Printf("seeded %d rotated rows in %s; refresh_tokens holds %d rows\n", rows, time.Since(start).Round(time.Millisecond), total)
	return nil
}
