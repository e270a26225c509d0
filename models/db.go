package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/tokenrelay/authsvc/config"
)

// DB is the service's database: a connection pool for writes and one for
// reads. On SQLite the write pool has a single connection, so writers queue in
// Go instead of spinning on SQLite's busy handler, and every write transaction
// starts as BEGIN IMMEDIATE; on PostgreSQL both pools are the same.
type DB struct {
	write     *gorm.DB
	read      *gorm.DB
	dialect   string
	hot       hotPath       // the refresh path's prepared statements
	rotations *committer    // commits rotations in groups; nil until Open prepared hot
	wal       *checkpointer // SQLite's WAL checkpoints; nil on PostgreSQL
	retry     retrier       // retries of operations that met a transient failure
}

// postgresCommitters is how many groups of rotations an instance commits at
// once on PostgreSQL: one. Two (one group's statement running while the
// other's WAL flush completes) measured worse on a machine of 2 cores, one
// instance or three (bench/cluster.sh set-up, 50 clients, runs alternated):
// the groups were half the size, so PostgreSQL did nearly twice the
// statements, and its CPU per refresh went from about 107 to 130 us with one
// instance and from 172 to 212 us with three; refreshes/s fell by 4 to 16 %.
// Other instances' committers still write beside this one, which the
// compare-and-swap keeps correct. SQLite has one writer, so one as well.
const postgresCommitters = 1

// sqlitePragmas are the settings of every SQLite connection: WAL lets readers
// run beside the writer, _txlock=immediate takes the write lock at BEGIN (a
// read that upgrades to a write would fail with "database is locked" instead of
// waiting), synchronous=FULL makes a committed rotation survive a power cut,
// and busy_timeout covers other processes on the same file.
var sqlitePragmas = [][2]string{
	{"_journal_mode", "WAL"},
	{"_busy_timeout", "10000"},
	{"_synchronous", "FULL"},
	{"_txlock", "immediate"},
	{"_foreign_keys", "on"},
}

// sqliteDriver is the database/sql driver of the service's SQLite
// connections: go-sqlite3 with sqliteConnPragmas run on every new connection.
const sqliteDriver = "sqlite3_authsvc"

// sqliteConnPragmas are the SQLite settings that the DSN cannot carry, run on
// every connection as it opens. They size SQLite's memory for a table of
// millions of tokens; on the small tables of BenchmarkRotate they measure
// neither better nor worse than the defaults.
var sqliteConnPragmas = []string{
	// Read the database file through a memory map of up to 256 MiB: a
	// lookup walks the token-hash index and the table without a read(2) and
	// a copy per page. (Pages still in the WAL are read as before.)
	"PRAGMA mmap_size = 268435456",
	// Up to 32 MiB of page cache per connection, where the default is 2 MiB:
	// room for the inner pages of the token-hash index and the primary key
	// of millions of tokens, which every lookup and rotation walks, and for
	// the pages a group's rotations write. It is allocated as pages are used.
	"PRAGMA cache_size = -32768",
	// Temporary b-trees (the IN (SELECT ... LIMIT) of the batched prune and
	// seal erasure) in memory rather than in temporary files.
	"PRAGMA temp_store = MEMORY",
	// No checkpoint inside a commit: the checkpointer runs them beside the
	// commits (see checkpointer).
	"PRAGMA wal_autocheckpoint = 0",
}

var registerSQLiteDriver = sync.OnceFunc(func() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range sqliteConnPragmas {
			if _, err := c.Exec(p, nil); err != nil {
				return err
			}
		}
		return nil
	}})
})

// Open connects to the database that url names (postgres:// or postgresql://
// for PostgreSQL, anything else is an SQLite file path or file: URI) and
// applies the schema migrations it lacks (see Migrate); with
// MigrateOnOpen(false) it only checks that none are pending.
func Open(ctx context.Context, url string, log *slog.Logger, opts ...OpenOption) (*DB, error) {
	o := openOptions{migrate: true}
	for _, opt := range opts {
		opt(&o)
	}
	db, unlock, err := openLocked(ctx, url, log)
	if err != nil {
		return nil, err
	}
	if o.migrate {
		_, err = db.migrate(ctx, log)
	} else {
		err = db.checkSchema(ctx)
	}
	if err = errors.Join(err, unlock()); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := db.prepareHotPath(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if db.dialect == "postgres" {
		db.rotations = newCommitter(postgresCommitters, db.hot.writePostgres, o.onGroupCommit)
	} else {
		db.rotations = newCommitter(1, db.hot.writeSQLite, o.onGroupCommit)
		read, _ := db.read.DB()
		db.wal = startCheckpointer(read, log)
	}
	if o.maxConns > 0 && db.dialect == "postgres" {
		sqlDB, _ := db.write.DB()
		sqlDB.SetMaxOpenConns(o.maxConns)
		sqlDB.SetMaxIdleConns(o.maxConns)
	}
	return db, nil
}

// connect opens the pools of the database that url names and checks that it
// answers; it leaves the schema alone.
func connect(ctx context.Context, url string, log *slog.Logger) (*DB, error) {
	db := &DB{retry: newRetrier(log)}
	if isPostgres(url) {
		db.dialect = "postgres"
	} else {
		db.dialect = "sqlite"
	}
	cfg := &gorm.Config{
		Logger:                 newGormLogger(log),
		TranslateError:         true,
		SkipDefaultTransaction: true,
		// No PrepareStmt: gorm's statement cache prepares on the pool while a
		// transaction may hold the single SQLite write connection, and the
		// two wait for each other forever under concurrent writes.
		NowFunc: func() time.Time { return time.Now().UTC() },
	}

	var err error
	if db.dialect == "postgres" {
		dialector := postgres.New(postgres.Config{DSN: url, OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionShouldPing(db.retry.shouldPing)}})
		if db.write, err = gorm.Open(dialector, cfg); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		db.read = db.write
		sqlDB, _ := db.write.DB()
		sqlDB.SetMaxOpenConns(DefaultMaxConns)
		sqlDB.SetMaxIdleConns(DefaultMaxConns)
	} else {
		dsn, err := sqliteDSN(url)
		if err != nil {
			return nil, err
		}
		// The file holds password and token hashes: readable by its owner
		// only. SQLite gives its -wal and -shm files the database file's
		// permissions, so creating it first covers them too.
		if f, err := os.OpenFile(sqliteFilePath(dsn), os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			_ = f.Close()
		}
		registerSQLiteDriver()
		dialector := func() gorm.Dialector { return sqlite.New(sqlite.Config{DriverName: sqliteDriver, DSN: dsn}) }
		if db.write, err = gorm.Open(dialector(), cfg); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		w, _ := db.write.DB()
		w.SetMaxOpenConns(1)
		w.SetConnMaxIdleTime(0)
		if db.read, err = gorm.Open(dialector(), cfg); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		r, _ := db.read.DB()
		n := max(4, 2*runtime.GOMAXPROCS(0))
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
	}
	if err := db.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// isPostgres reports whether url names a PostgreSQL database: a postgres://
// or postgresql:// URL, or a libpq key/value string.
func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") || config.IsKeyValueDSN(url)
}

// sqliteDSN adds the service's pragmas to a path or file: URI, keeping any the
// user set. "sqlite://path" and "sqlite:path" are accepted as well.
func sqliteDSN(raw string) (string, error) {
	raw = strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite://"), "sqlite:")
	if raw == "" || raw == ":memory:" || strings.Contains(raw, "mode=memory") {
		// Every pooled connection would get its own empty database.
		return "", errors.New("sqlite: an in-memory database cannot be shared by the connection pool; use a file")
	}
	path, query, _ := strings.Cut(raw, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sqlite: parse options of %q: %w", path, err)
	}
	for _, p := range sqlitePragmas {
		if !q.Has(p[0]) {
			q.Set(p[0], p[1])
		}
	}
	return path + "?" + q.Encode(), nil
}

// sqliteFilePath returns the file of a DSN that sqliteDSN made: a plain path,
// or a file: URI (file:name, file:/abs, file:///abs, file://localhost/abs).
func sqliteFilePath(dsn string) string {
	p, _, _ := strings.Cut(dsn, "?")
	p, uri := strings.CutPrefix(p, "file:")
	if !uri {
		return p
	}
	if rest, ok := strings.CutPrefix(p, "//"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p = rest[i:] // drop the authority, empty or localhost
		}
	}
	if unescaped, err := url.PathUnescape(p); err == nil {
		p = unescaped
	}
	return p
}

// Dialect names the database: "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.dialect }

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.read.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error; err != nil {
		return fmt.Errorf("ping %s: %w", db.dialect, err)
	}
	return nil
}

// Close commits the rotations already queued, then closes both pools.
// Rotate fails once Close has begun.
func (db *DB) Close() error {
	if db.rotations != nil {
		db.rotations.close()
	}
	if db.wal != nil {
		db.wal.close()
	}

	errs := []error{db.hot.close()}
	for _, g := range []*gorm.DB{db.write, db.read} {
		if g == nil {
			continue
		}
		if s, err := g.DB(); err == nil {
			errs = append(errs, s.Close())
		}
		if db.read == db.write {
			break
		}
	}
	return errors.Join(errs...)
}
