package models

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tokenrelay/authsvc/internal/testpg"
)

// legacyUser and legacyRefreshToken are the models as they stood when
// gorm's AutoMigrate made the schema, frozen here: they stand for the
// databases that earlier releases created, which later changes to the
// models do not change.
type legacyUser struct {
	ID           string    `gorm:"primaryKey;size:36"`
	Email        string    `gorm:"size:320;not null;uniqueIndex"`
	PasswordHash string    `gorm:"size:60;not null"`
	Name         *string   `gorm:"size:400"`
	CreatedAt    time.Time `gorm:"not null"`
}

func (legacyUser) TableName() string { return "users" }

type legacyRefreshToken struct {
	ID              int64     `gorm:"primaryKey"`
	TokenHash       []byte    `gorm:"not null;uniqueIndex"`
	UserID          string    `gorm:"size:36;not null;index"`
	FamilyID        string    `gorm:"size:36;not null;index"`
	ParentID        *int64    `gorm:""`
	ExpiresAt       time.Time `gorm:"not null;index"`
	CreatedAt       time.Time `gorm:"not null"`
	RotatedAt       *time.Time
	SuccessorHash   []byte
	SuccessorSealed []byte
	RevokedAt       *time.Time
}

func (legacyRefreshToken) TableName() string { return "refresh_tokens" }

// testDB is an empty database of one test.
type testDB struct {
	url    string
	schema string // PostgreSQL: the schema of url's search_path
}

// eachDatabase runs fn on SQLite and, when TEST_POSTGRES_URL is set, on
// PostgreSQL; fresh returns a new empty database each time it is called.
func eachDatabase(t *testing.T, fn func(t *testing.T, dialect string, fresh func() testDB)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, "sqlite", func() testDB { return testDB{url: filepath.Join(t.TempDir(), "auth.db")} })
	})
	t.Run("postgres", func(t *testing.T) {
		testpg.Require(t)
		fn(t, "postgres", func() testDB { return postgresSchema(t) })
	})
}

// postgresSchema creates a schema of the test's own on TEST_POSTGRES_URL's
// server, dropped when the test ends.
func postgresSchema(t *testing.T) testDB {
	t.Helper()
	u, schema := testpg.Schema(t)
	return testDB{url: u, schema: schema}
}

// latestVersion is the highest version among the embedded migrations of dialect.
func latestVersion(t *testing.T, dialect string) int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("migrations", dialect, "*.sql"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no migrations for %s: %v", dialect, err)
	}
	var v int64
	fmt.Sscanf(filepath.Base(slices.Max(names)), "%d_", &v)
	return v
}

// assertMigrated checks that db's schema is at the latest version and that
// each version was recorded once: no two migrators applied the same one.
func assertMigrated(t *testing.T, db *DB, tdb testDB) {
	t.Helper()
	var rows []struct{ VersionID, N int64 }
	if err := db.write.Raw("SELECT version_id, count(*) AS n FROM goose_db_version GROUP BY version_id ORDER BY version_id").Scan(&rows).Error; err != nil {
		t.Fatalf("read the version table: %v", err)
	}
	latest := latestVersion(t, db.Dialect())
	if len(rows) == 0 || rows[len(rows)-1].VersionID != latest {
		t.Errorf("versions recorded = %+v, want up to %d", rows, latest)
	}
	for _, r := range rows {
		if r.N != 1 {
			t.Errorf("version %d recorded %d times, want once", r.VersionID, r.N)
		}
	}
	if tdb.schema != "" {
		var n int
		db.write.Raw("SELECT count(*) FROM pg_tables WHERE schemaname = ? AND tablename = 'goose_db_version'", tdb.schema).Scan(&n)
		if n != 1 {
			t.Errorf("goose_db_version is not in the search_path's schema %s", tdb.schema)
		}
	}
	if err := db.checkSchema(t.Context()); err != nil {
		t.Errorf("checkSchema after migrating = %v", err)
	}
}

// TestOpenConcurrentlyOnEmptyDatabase starts N instances at the same instant
// on an empty database, as the first deploy of a replica set does: every one
// starts, the schema is at the latest version, and every migration was
// applied once.
func TestOpenConcurrentlyOnEmptyDatabase(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		for n := 3; n <= 8; n++ {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				tdb := fresh()
				start := make(chan struct{})
				type opened struct {
					db  *DB
					err error
				}
				results := make(chan opened, n)
				for range n {
					go func() {
						<-start
						db, err := Open(context.Background(), tdb.url, slog.New(slog.DiscardHandler))
						results <- opened{db, err}
					}()
				}
				close(start)
				var dbs []*DB
				for range n {
					r := <-results
					if r.err != nil {
						t.Errorf("Open = %v", r.err)
						continue
					}
					dbs = append(dbs, r.db)
					t.Cleanup(func() { r.db.Close() })
				}
				if len(dbs) < 2 {
					t.FailNow()
				}
				assertMigrated(t, dbs[0], tdb)
				// The instances share one working schema.
				now := time.Now().UTC()
				u := User{ID: "u1", Email: "first@example.com", PasswordHash: "x", CreatedAt: now}
				first := RefreshToken{TokenHash: []byte("h1"), UserID: "u1", FamilyID: "f1", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
				if err := dbs[0].CreateUser(t.Context(), &u, &first); err != nil {
					t.Fatalf("CreateUser: %v", err)
				}
				if got, err := dbs[len(dbs)-1].TokenByHash(t.Context(), []byte("h1")); err != nil || got.Email != u.Email {
					t.Errorf("another instance reads the token as %+v, %v", got, err)
				}
			})
		}
	})
}

// createLegacy makes tdb's schema as releases before versioned migrations
// did, with gorm's AutoMigrate, and stores one user and one token in it.
func createLegacy(t *testing.T, tdb testDB, dialect string) {
	t.Helper()
	open := sqlite.Open(tdb.url)
	if dialect == "postgres" {
		open = postgres.Open(tdb.url)
	}
	g, err := gorm.Open(open, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := g.DB(); err == nil {
			s.Close()
		}
	}()
	if err := g.AutoMigrate(&legacyUser{}, &legacyRefreshToken{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	now := time.Now().UTC()
	if err := g.Create(&legacyUser{ID: "old-user", Email: "old@example.com", PasswordHash: "hash", CreatedAt: now}).Error; err != nil {
		t.Fatal(err)
	}
	if err := g.Create(&legacyRefreshToken{TokenHash: []byte("old-hash"), UserID: "old-user", FamilyID: "old-family",
		ExpiresAt: now.Add(time.Hour), CreatedAt: now}).Error; err != nil {
		t.Fatal(err)
	}
}

// schemaOf describes the service's tables in tdb as the catalog has them
// (columns and their types, constraints, indexes with their names,
// sequences), leaving out goose's version table, in an order of its own.
func schemaOf(t *testing.T, tdb testDB, dialect string) []string {
	t.Helper()
	var queries []string
	var args []any
	if dialect == "sqlite" {
		queries = []string{`SELECT type || ' ' || name || ' ON ' || tbl_name || ': ' || coalesce(sql, '') FROM sqlite_master
			WHERE tbl_name <> 'goose_db_version'`}
	} else {
		args = []any{tdb.schema}
		queries = []string{
			`SELECT 'column ' || table_name || '.' || column_name || ' #' || ordinal_position || ' ' || data_type ||
				coalesce('(' || character_maximum_length || ')', '') || ' nullable=' || is_nullable ||
				' default=' || coalesce(column_default, '') || ' identity=' || is_identity ||
				' owns=' || coalesce(pg_get_serial_sequence(quote_ident(table_schema) || '.' || quote_ident(table_name), column_name), '')
			FROM information_schema.columns WHERE table_schema = ? AND table_name <> 'goose_db_version'`,
			`SELECT 'constraint ' || c.conname || ' ON ' || cl.relname || ': ' || pg_get_constraintdef(c.oid)
			FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
			WHERE n.nspname = ? AND cl.relname <> 'goose_db_version'`,
			`SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = ? AND tablename <> 'goose_db_version'`,
			`SELECT 'sequence ' || sequencename || ' ' || data_type::text || ' start=' || start_value || ' inc=' || increment_by ||
				' min=' || min_value || ' max=' || max_value || ' cache=' || cache_size || ' cycle=' || cycle
			FROM pg_sequences WHERE schemaname = ? AND sequencename NOT LIKE 'goose_db_version%'`,
		}
	}
	db, err := connect(t.Context(), tdb.url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, q := range queries {
		var lines []string
		if err := db.write.Raw(q, args...).Scan(&lines).Error; err != nil {
			t.Fatalf("describe the schema: %v", err)
		}
		out = append(out, lines...)
	}
	for i := range out {
		if tdb.schema != "" {
			out[i] = strings.ReplaceAll(out[i], tdb.schema+".", "")
		}
	}
	slices.Sort(out)
	return out
}

// TestBaselineMatchesAutoMigrate compares, in the catalog, the schema that
// migration 1 creates with the one gorm's AutoMigrate created: same tables,
// columns, types, constraints, indexes and index names.
// laterObjects are the schema objects that migrations after the baseline
// add or drop; descriptions compared without them compare the baseline.
var laterObjects = []string{
	"idx_refresh_tokens_sealed",  // added by 00002_seal_index.sql
	"idx_refresh_tokens_user_id", // dropped by 00003_drop_user_id_index.sql
}

// baselineOnly drops from a schema description what later migrations add or drop.
func baselineOnly(schema []string) []string {
	return slices.DeleteFunc(slices.Clone(schema), func(entry string) bool {
		return slices.ContainsFunc(laterObjects, func(name string) bool { return strings.Contains(entry, name) })
	})
}

func TestBaselineMatchesAutoMigrate(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		legacy, migrated := fresh(), fresh()
		createLegacy(t, legacy, dialect)
		db, err := Open(t.Context(), migrated.url, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		want, got := baselineOnly(schemaOf(t, legacy, dialect)), baselineOnly(schemaOf(t, migrated, dialect))
		if len(want) < 8 {
			t.Fatalf("the AutoMigrate schema has %d entries; the description is broken:\n%s", len(want), strings.Join(want, "\n"))
		}
		if !slices.Equal(got, want) {
			t.Errorf("the baseline differs from AutoMigrate's schema\nbaseline:\n%s\nAutoMigrate:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestOpenAdoptsAutoMigrateDatabase opens a database that an earlier
// release made with AutoMigrate (no version table): it starts, the rows are
// there, the schema is unchanged and recorded at the latest version, and it
// keeps working.
func TestOpenAdoptsAutoMigrateDatabase(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		tdb := fresh()
		createLegacy(t, tdb, dialect)
		before := baselineOnly(schemaOf(t, tdb, dialect))

		db, err := Open(t.Context(), tdb.url, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("Open on an AutoMigrate database = %v", err)
		}
		t.Cleanup(func() { db.Close() })
		assertMigrated(t, db, tdb)
		if after := baselineOnly(schemaOf(t, tdb, dialect)); !slices.Equal(after, before) {
			t.Errorf("adopting the baseline changed the schema\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
		}

		ctx := t.Context()
		u, err := db.UserByEmail(ctx, "old@example.com")
		if err != nil || u.ID != "old-user" || u.PasswordHash != "hash" {
			t.Errorf("the old user reads as %+v, %v", u, err)
		}
		old, err := db.TokenByHash(ctx, []byte("old-hash"))
		if err != nil || old.UserID != "old-user" || old.Email != "old@example.com" {
			t.Fatalf("the old token reads as %+v, %v", old, err)
		}
		now := time.Now().UTC()
		next := &RefreshToken{TokenHash: []byte("new-hash"), UserID: "old-user", FamilyID: "old-family", ParentID: &old.ID,
			ExpiresAt: now.Add(time.Hour), CreatedAt: now}
		if err := db.Rotate(ctx, old.ID, now, []byte("sealed"), next); err != nil {
			t.Fatalf("Rotate the old token = %v", err)
		}
		if got, err := db.TokenByHash(ctx, []byte("new-hash")); err != nil || got.ID <= old.ID {
			t.Errorf("the successor reads as %+v, %v; want an id after the old token's %d", got, err, old.ID)
		}
		dup := &RefreshToken{TokenHash: []byte("dup-hash"), UserID: "new-user", FamilyID: "new-family", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
		if err := db.CreateUser(ctx, &User{ID: "new-user", Email: "old@example.com", PasswordHash: "x", CreatedAt: now}, dup); !errors.Is(err, ErrDuplicateEmail) {
			t.Errorf("a second user with the old email: %v, want ErrDuplicateEmail (the unique index survived)", err)
		}
	})
}

// TestOpenWithoutMigratingRefusesPendingMigrations: with MigrateOnOpen(false)
// Open refuses a schema that lacks a migration, in one line and without
// writing to the database, and accepts it once Migrate has run; a schema
// ahead of the build (a newer release migrated it) is accepted.
func TestOpenWithoutMigratingRefusesPendingMigrations(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		ctx := t.Context()
		log := slog.New(slog.DiscardHandler)
		empty, legacy := fresh(), fresh()
		createLegacy(t, legacy, dialect)
		for name, tdb := range map[string]testDB{"empty": empty, "AutoMigrate": legacy} {
			db, err := Open(ctx, tdb.url, log, MigrateOnOpen(false))
			if !errors.Is(err, ErrPendingMigrations) {
				if db != nil {
					db.Close()
				}
				t.Fatalf("Open(%s database, MigrateOnOpen(false)) = %v, want ErrPendingMigrations", name, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "version 0") || !strings.Contains(msg, "00001_baseline.sql") {
				t.Errorf("the refusal is %q, want one line naming version 0 and the pending migration", msg)
			}
			c, err := connect(ctx, tdb.url, log)
			if err != nil {
				t.Fatal(err)
			}
			if exists, err := c.versionTableExists(ctx); exists || err != nil {
				t.Errorf("the refused Open created the version table (%v, %v)", exists, err)
			}
			c.Close()
		}

		applied, err := Migrate(ctx, empty.url, log)
		if err != nil || len(applied) == 0 || applied[0].Version != 1 || applied[0].Name != "00001_baseline.sql" {
			t.Fatalf("Migrate = %+v, %v; want the baseline applied", applied, err)
		}
		if again, err := Migrate(ctx, empty.url, log); err != nil || len(again) != 0 {
			t.Errorf("Migrate again = %+v, %v; want nothing applied", again, err)
		}
		db, err := Open(ctx, empty.url, log, MigrateOnOpen(false))
		if err != nil {
			t.Fatalf("Open(MigrateOnOpen(false)) after Migrate = %v", err)
		}
		defer db.Close()

		// A newer release applied a version this build does not know.
		if err := db.write.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)").Error; err != nil {
			t.Fatal(err)
		}
		for _, migrate := range []bool{false, true} {
			newer, err := Open(ctx, empty.url, log, MigrateOnOpen(migrate))
			if err != nil {
				t.Errorf("Open(MigrateOnOpen(%v)) of a schema ahead of the build = %v", migrate, err)
				continue
			}
			newer.Close()
		}
		status, err := MigrationStatus(ctx, empty.url, log)
		if err != nil {
			t.Fatal(err)
		}
		last := status[len(status)-1]
		if last.Version != 99999 || !last.Applied || last.Name != "" || !status[0].Applied || status[0].AppliedAt.IsZero() {
			t.Errorf("MigrationStatus = %+v, want the baseline applied, then 99999 applied and unknown", status)
		}
	})
}

// signalWriter is a log destination that closes seen when a line holding
// want is written.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.seen != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}

// TestMigrationLockSerializesAndIsPerDatabase holds the migration lock of a
// database: Open on it waits (it logs that it waits, and does not return)
// and finishes once the lock is released; an Open that gives up waiting
// returns its context's error and leaves nothing locked; Open on another
// database (another schema on the same server) does not wait at all.
func TestMigrationLockSerializesAndIsPerDatabase(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		ctx := t.Context()
		tdb, other := fresh(), fresh()
		holder, unlock, err := openLocked(ctx, tdb.url, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close()

		if db, err := Open(ctx, other.url, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("Open on another database while this one's lock is held = %v", err)
		} else {
			db.Close()
		}

		// An Open that gives up.
		w := &signalWriter{want: "waiting for another instance", seen: make(chan struct{})}
		waiting := w.seen
		giveUp, cancel := context.WithCancel(ctx)
		gaveUp := make(chan error, 1)
		go func() {
			db, err := Open(giveUp, tdb.url, slog.New(slog.NewTextHandler(w, nil)))
			if err == nil {
				db.Close()
			}
			gaveUp <- err
		}()
		<-waiting
		cancel()
		if err := <-gaveUp; err == nil || !errors.Is(err, context.Canceled) {
			t.Errorf("Open whose context ended while it waited for the lock = %v, want context.Canceled", err)
		}

		// An Open that waits it out.
		w = &signalWriter{want: "waiting for another instance", seen: make(chan struct{})}
		waiting = w.seen
		type result struct {
			db  *DB
			err error
		}
		opened := make(chan result, 1)
		go func() {
			db, err := Open(ctx, tdb.url, slog.New(slog.NewTextHandler(w, nil)))
			opened <- result{db, err}
		}()
		<-waiting
		select {
		case r := <-opened:
			t.Fatalf("Open returned (%v) while another holder had the migration lock", r.err)
		default:
		}
		if err := unlock(); err != nil {
			t.Fatalf("unlock = %v", err)
		}
		r := <-opened
		if r.err != nil {
			t.Fatalf("Open after the lock was released = %v", r.err)
		}
		defer r.db.Close()
		assertMigrated(t, r.db, tdb)
	})
}

func TestSQLiteFilePath(t *testing.T) {
	for in, want := range map[string]string{
		"auth.db":                         "auth.db",
		"sqlite://data/auth.db":           "data/auth.db",
		"/var/lib/auth.db":                "/var/lib/auth.db",
		"file:auth.db?_synchronous=FULL":  "auth.db",
		"file:/var/lib/auth.db":           "/var/lib/auth.db",
		"file:///var/lib/auth.db?mode=rw": "/var/lib/auth.db",
		"file://localhost/var/my%20db":    "/var/my db",
	} {
		dsn, err := sqliteDSN(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := sqliteFilePath(dsn); got != want {
			t.Errorf("sqliteFilePath(sqliteDSN(%q)) = %q, want %q", in, got, want)
		}
	}
}

// TestMigrationsAfterBaseline: a migrated schema has what the migrations
// after the baseline add (the seal index) and lacks what they drop (the
// index on user_id, which no query uses and every insert paid for).
func TestMigrationsAfterBaseline(t *testing.T) {
	eachDatabase(t, func(t *testing.T, dialect string, fresh func() testDB) {
		tdb := fresh()
		db, err := Open(t.Context(), tdb.url, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		schema := strings.Join(schemaOf(t, tdb, dialect), "\n")
		if !strings.Contains(schema, "idx_refresh_tokens_sealed") {
			t.Errorf("the migrated schema lacks idx_refresh_tokens_sealed:\n%s", schema)
		}
		if strings.Contains(schema, "idx_refresh_tokens_user_id") {
			t.Errorf("the migrated schema still has idx_refresh_tokens_user_id:\n%s", schema)
		}
	})
}
