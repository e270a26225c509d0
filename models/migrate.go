package models

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// migrationFiles holds the schema of each dialect as goose SQL migrations:
// migrations/<dialect>/NNNNN_name.sql. They are the one source of the schema;
// the gorm tags of the models do not create anything.
//
//go:embed migrations/postgres/*.sql migrations/sqlite/*.sql
var migrationFiles embed.FS

// versionTable is goose's table of applied versions. On PostgreSQL it is
// created unqualified, so it lands in the first schema of the search_path,
// beside the service's tables.
const versionTable = goose.DefaultTablename

// ErrPendingMigrations reports that the database schema is older than this
// build needs and Open was told not to migrate it.
var ErrPendingMigrations = errors.New("models: schema migrations pending")

// Migration is one versioned schema migration and its state in a database.
type Migration struct {
	Version   int64
	Name      string        // the file, e.g. 00001_baseline.sql; empty for a version this build does not know
	Applied   bool          // recorded in the database's version table
	AppliedAt time.Time     // when it was recorded, as the database's clock says; zero while pending
	Duration  time.Duration // how long it took, for a migration just applied
}

// OpenOption changes what Open does besides connecting.
type OpenOption func(*openOptions)

type openOptions struct {
	migrate       bool
	onGroupCommit func(CommitStats)
	maxConns      int
}

// DefaultMaxConns is the size of a PostgreSQL connection pool unless
// MaxConns says otherwise: three instances stay well under PostgreSQL's
// default of 100 connections, and two cores gain nothing from more.
const DefaultMaxConns = 20

// MaxConns sets how many PostgreSQL connections the pool may hold (SQLite
// has one writer and a few readers whatever it says).
func MaxConns(n int) OpenOption {
	return func(o *openOptions) { o.maxConns = n }
}

// OnGroupCommit has fn called after every group commit of rotations (see
// committer) with its size (how well concurrent rotations share their
// transactions) and the commit's duration (where a slow fsync shows). fn must
// be cheap and safe for concurrent use.
func OnGroupCommit(fn func(CommitStats)) OpenOption {
	return func(o *openOptions) { o.onGroupCommit = fn }
}

// MigrateOnOpen sets whether Open applies pending migrations (the default)
// or, when migrate is false, only checks that none are pending and fails
// with ErrPendingMigrations if some are: for deployments that migrate in a
// step of their own (see Migrate).
func MigrateOnOpen(migrate bool) OpenOption {
	return func(o *openOptions) { o.migrate = migrate }
}

// Migrate applies the pending migrations to the database that url names
// and returns those it applied, in order (with an error, those applied
// before the one that failed); none when the schema was current.
// Any number of processes may call it (or Open) at once: one migrates while
// the others wait, then find nothing left to do.
func Migrate(ctx context.Context, url string, log *slog.Logger) ([]Migration, error) {
	db, unlock, err := openLocked(ctx, url, log)
	if err != nil {
		return nil, err
	}
	applied, err := db.migrate(ctx, log)
	return applied, errors.Join(err, unlock(), db.Close())
}

// MigrationStatus returns every migration this build knows, and any version
// the database records that it does not know, ordered by version. It does
// not write to the database, and waits for a migration under way.
func MigrationStatus(ctx context.Context, url string, log *slog.Logger) ([]Migration, error) {
	db, unlock, err := openLocked(ctx, url, log)
	if err != nil {
		return nil, err
	}
	status, err := db.migrationStatus(ctx)
	return status, errors.Join(err, unlock(), db.Close())
}

// openLocked connects to the database that url names while it holds the
// database's migration lock, which the returned function releases. The lock
// serializes whoever migrates or checks the schema, across processes: one
// migrates while the others wait, then find nothing left to do (or, checking,
// see the finished schema rather than a half-made one).
//
// On SQLite the lock is a flock on a file beside the database, taken before
// the first connection: a new file's first connections switch it to WAL, and
// two of them at once fail with "database is locked" without waiting. On
// PostgreSQL it is an advisory lock, taken on a connection of the pool.
func openLocked(ctx context.Context, url string, log *slog.Logger) (*DB, func() error, error) {
	if isPostgres(url) {
		db, err := connect(ctx, url, log)
		if err != nil {
			return nil, nil, err
		}
		unlock, err := db.lockPostgresMigrations(ctx, log)
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("migration lock: %w", err), db.Close())
		}
		return db, unlock, nil
	}
	dsn, err := sqliteDSN(url)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := lockFile(ctx, sqliteFilePath(dsn)+".migrate.lock", log)
	if err != nil {
		return nil, nil, fmt.Errorf("migration lock: %w", err)
	}
	db, err := connect(ctx, url, log)
	if err != nil {
		return nil, nil, errors.Join(err, unlock())
	}
	return db, unlock, nil
}

// migrations returns a goose provider of db's migrations, on db's write pool.
//
// No goose.WithSessionLocker: goose checks for pending migrations, and
// creates its version table, before it takes that lock, and it polls for the
// lock once a second at best. openLocked's lock covers all of goose's work
// instead, and waits without polling.
func (db *DB) migrations() (*goose.Provider, error) {
	files, err := fs.Sub(migrationFiles, path.Join("migrations", db.dialect))
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.write.DB()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(db.gooseDialect(), sqlDB, files, goose.WithDisableGlobalRegistry(true))
}

// gooseDialect is goose's name of db's dialect.
func (db *DB) gooseDialect() database.Dialect {
	if db.dialect == "postgres" {
		return database.DialectPostgres
	}
	return database.DialectSQLite3
}

// migrate applies the pending migrations and returns those it applied, even
// when a later one fails; the caller holds the migration lock (see
// openLocked).
func (db *DB) migrate(ctx context.Context, log *slog.Logger) ([]Migration, error) {
	p, err := db.migrations()
	if err != nil {
		return nil, fmt.Errorf("migrate schema: %w", err)
	}
	results, err := p.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied // they stay applied: each migration commits on its own
	}
	applied := make([]Migration, 0, len(results))
	for _, r := range results {
		m := Migration{Version: r.Source.Version, Name: path.Base(r.Source.Path), Applied: true, Duration: r.Duration}
		log.Info("applied schema migration", "version", m.Version, "migration", m.Name, "duration", m.Duration)
		applied = append(applied, m)
	}
	if err != nil {
		return applied, fmt.Errorf("migrate schema: %w", err)
	}
	return applied, nil
}

// lockPostgresMigrations takes a session-level advisory lock, on a
// connection of its own, whose key is derived from the current schema (the
// first existing one of the search_path): instances that share a schema
// migrate one at a time, and those of different schemas (tests run in
// parallel, each in a schema of its own) do not wait for each other. Advisory
// locks are per database already. pg_advisory_lock waits in the server,
// without polling, and the lock goes with the session if the process dies.
func (db *DB) lockPostgresMigrations(ctx context.Context, log *slog.Logger) (func() error, error) {
	sqlDB, err := db.write.DB()
	if err != nil {
		return nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// fail closes the connection's session, and with it any lock it holds,
	// and returns err, or the context's error if that ended the wait.
	fail := func(err error) error {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	var schema sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, fail(err)
	}
	if !schema.Valid {
		return nil, fail(errors.New("postgres: no schema of the search_path exists"))
	}
	key := advisoryKey(schema.String)
	var locked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		return nil, fail(err)
	}
	if !locked {
		log.Info("waiting for another instance to finish migrating the schema", "schema", schema.String)
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return nil, fail(err)
		}
	}
	return func() error {
		var released bool
		err := conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key).Scan(&released)
		if err == nil && !released {
			err = errors.New("pg_advisory_unlock: the session did not hold the lock")
		}
		if err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			return errors.Join(fmt.Errorf("migration unlock: %w", err), conn.Close())
		}
		return conn.Close()
	}, nil
}

// advisoryKey is the advisory lock key of the migrations of a schema.
func advisoryKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("authsvc schema migrations\x00" + schema))
	return int64(h.Sum64())
}

// migrationStatus returns the state of every migration, reading the version
// table if there is one and creating nothing.
func (db *DB) migrationStatus(ctx context.Context) ([]Migration, error) {
	p, err := db.migrations()
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	var status []Migration
	known := map[int64]int{}
	for _, s := range p.ListSources() {
		known[s.Version] = len(status)
		status = append(status, Migration{Version: s.Version, Name: path.Base(s.Path)})
	}

	exists, err := db.versionTableExists(ctx)
	if err != nil || !exists {
		return status, err
	}
	sqlDB, err := db.write.DB()
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	store, err := database.NewStore(db.gooseDialect(), versionTable)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	rows, err := store.ListMigrations(ctx, sqlDB)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	for _, r := range rows {
		if r.Version == 0 { // goose's marker of an initialized table
			continue
		}
		i, ok := known[r.Version]
		if !ok {
			i = len(status)
			known[r.Version] = i
			status = append(status, Migration{Version: r.Version})
		}
		if status[i].Applied {
			continue
		}
		status[i].Applied = true
		if got, err := store.GetMigration(ctx, sqlDB, r.Version); err == nil {
			status[i].AppliedAt = got.Timestamp
		}
	}
	slices.SortFunc(status, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return status, nil
}

// versionTableExists looks for goose's version table where goose would
// create it.
func (db *DB) versionTableExists(ctx context.Context) (bool, error) {
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.dialect == "postgres" {
		q = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
	}
	sqlDB, err := db.write.DB()
	if err != nil {
		return false, err
	}
	var n int
	if err := sqlDB.QueryRowContext(ctx, q, versionTable).Scan(&n); err != nil {
		return false, fmt.Errorf("find %s: %w", versionTable, err)
	}
	return n > 0, nil
}

// checkSchema returns an error wrapping ErrPendingMigrations if a migration
// this build knows is not applied. A database ahead of the build (migrated
// by a newer release) passes: migrations add to the schema that older
// releases use.
func (db *DB) checkSchema(ctx context.Context) error {
	status, err := db.migrationStatus(ctx)
	if err != nil {
		return err
	}
	var current, latest int64
	var pending []string
	for _, m := range status {
		switch {
		case m.Applied:
			current = max(current, m.Version)
		default:
			pending = append(pending, m.Name)
		}
		if m.Name != "" {
			latest = max(latest, m.Version)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the database schema is at version %d, this build needs version %d (not applied: %s)",
		ErrPendingMigrations, current, latest, strings.Join(pending, ", "))
}
