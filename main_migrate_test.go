package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenrelay/authsvc/internal/testpg"
	"github.com/tokenrelay/authsvc/models"
)

// eachDatabaseURL runs fn with an empty SQLite file and, when
// TEST_POSTGRES_URL is set, an empty PostgreSQL schema of the test's own.
func eachDatabaseURL(t *testing.T, fn func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "auth.db")) })
	t.Run("postgres", func(t *testing.T) {
		u, _ := testpg.Schema(t)
		fn(t, u)
	})
}

// migrateCmd runs `authsvc migrate args...` on databaseURL and returns its
// exit code, stdout and stderr.
func migrateCmd(t *testing.T, databaseURL string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"DATABASE_URL": databaseURL}
	code := migrateMain(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestMigrateCommand runs `authsvc migrate` as a deployment's migration step
// would: status lists every migration as pending, migrate applies them and
// says so, a second migrate applies nothing, and status then lists them
// applied.
func TestMigrateCommand(t *testing.T) {
	eachDatabaseURL(t, func(t *testing.T, databaseURL string) {
		code, out, errOut := migrateCmd(t, databaseURL, "status")
		if code != 0 || !hasLine(out, "1", "pending", "00001_baseline.sql") || !hasLine(out, "2", "pending", "00002_seal_index.sql") ||
			!hasLine(out, "3", "pending", "00003_drop_user_id_index.sql") || !strings.Contains(out, "schema at version 0, 3 pending") {
			t.Fatalf("migrate status on an empty database = %d\n%s%s", code, out, errOut)
		}
		code, out, errOut = migrateCmd(t, databaseURL)
		if code != 0 || !strings.Contains(out, "applied 00001_baseline.sql (version 1)") || !strings.Contains(out, "applied 00002_seal_index.sql (version 2)") ||
			!strings.Contains(out, "applied 00003_drop_user_id_index.sql (version 3)") || !strings.Contains(out, "schema at version 3, 0 pending") {
			t.Fatalf("migrate = %d\n%s%s", code, out, errOut)
		}
		if strings.Contains(out+errOut, databaseURL) {
			t.Errorf("migrate printed DATABASE_URL, which may hold a password:\n%s%s", out, errOut)
		}
		code, out, errOut = migrateCmd(t, databaseURL, "up")
		if code != 0 || strings.Contains(out, "applied ") || !strings.Contains(out, "no pending migrations") {
			t.Errorf("migrate up a second time = %d\n%s%s", code, out, errOut)
		}
		code, out, errOut = migrateCmd(t, databaseURL, "status")
		if code != 0 || !hasLine(out, "1", "applied", "00001_baseline.sql") || !hasLine(out, "2", "applied", "00002_seal_index.sql") ||
			!hasLine(out, "3", "applied", "00003_drop_user_id_index.sql") {
			t.Errorf("migrate status after migrating = %d\n%s%s", code, out, errOut)
		}
	})
}

// getOK fails the test unless GET url answers 200.
func getOK(t *testing.T, url string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET %s = %d %s", url, res.StatusCode, body)
	}
}

// hasLine reports whether some line of out holds the fields, in order.
func hasLine(out string, fields ...string) bool {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		i := 0
		for _, w := range f {
			if i < len(fields) && w == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}

func TestMigrateCommandRejectsBadUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	for _, args := range [][]string{{"down"}, {"status", "extra"}, {"up", "1"}} {
		if code, _, errOut := migrateCmd(t, path, args...); code != 2 || !strings.Contains(errOut, "usage: authsvc migrate") {
			t.Errorf("migrate %q = %d, %q; want 2 and the usage", args, code, errOut)
		}
	}
	if code, out, _ := migrateCmd(t, path, "-h"); code != 0 || !strings.Contains(out, "usage: authsvc migrate") {
		t.Errorf("migrate -h = %d, %q; want 0 and the usage", code, out)
	}
	if code, _, errOut := migrateCmd(t, ":memory:"); code != 1 || !strings.Contains(errOut, "memory") {
		t.Errorf("migrate on :memory: = %d, %q; want 1 and the reason", code, errOut)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad usage touched the database: %v", err)
	}
}

// TestRunWithoutMigrateOnStart: with MIGRATE_ON_START=false the service
// refuses, in one line that says what to do, a database that lacks
// migrations, and serves once `authsvc migrate` has run.
func TestRunWithoutMigrateOnStart(t *testing.T) {
	eachDatabaseURL(t, func(t *testing.T, databaseURL string) {
		env := map[string]string{"PORT": "0", "DATABASE_URL": databaseURL, "MIGRATE_ON_START": "false"}
		err := run(t.Context(), func(k string) string { return env[k] }, io.Discard, nil)
		if !errors.Is(err, models.ErrPendingMigrations) {
			t.Fatalf("run on an unmigrated database = %v, want ErrPendingMigrations", err)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "authsvc migrate") || !strings.Contains(msg, "version 0") {
			t.Errorf("the refusal is %q, want one line naming the version and `authsvc migrate`", msg)
		}

		if code, out, errOut := migrateCmd(t, databaseURL); code != 0 {
			t.Fatalf("migrate = %d\n%s%s", code, out, errOut)
		}
		base, _, stop := startRun(t, env)
		getOK(t, base+"/health")
		if err := stop(); err != nil {
			t.Errorf("run = %v", err)
		}
	})
}

// TestRunMigratesOnStartByDefault: without MIGRATE_ON_START the service
// migrates an empty database itself, so `go run .` works on a new machine.
func TestRunMigratesOnStartByDefault(t *testing.T) {
	eachDatabaseURL(t, func(t *testing.T, databaseURL string) {
		base, _, stop := startRun(t, map[string]string{"DATABASE_URL": databaseURL})
		getOK(t, base+"/health")
		if err := stop(); err != nil {
			t.Errorf("run = %v", err)
		}
		status, err := models.MigrationStatus(context.Background(), databaseURL, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range status {
			if !m.Applied {
				t.Errorf("migration %d (%s) is pending after the service started", m.Version, m.Name)
			}
		}
	})
}
