// Package testpg gives a test a PostgreSQL schema of its own on the server
// that TEST_POSTGRES_URL names, so that tests share one database and never
// see each other's rows. Only tests use it.
package testpg

import (
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Require skips the test, saying so, when TEST_POSTGRES_URL is not set.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("TEST_POSTGRES_URL") == "" {
		t.Skip("TEST_POSTGRES_URL is not set")
	}
}

// Schema creates an empty schema on TEST_POSTGRES_URL's server, dropped
// when the test ends, and returns a URL of that server whose search_path is
// the schema, and the schema's name. Without TEST_POSTGRES_URL it skips the
// test, saying so.
func Schema(t testing.TB) (databaseURL, schema string) {
	t.Helper()
	Require(t)
	base := os.Getenv("TEST_POSTGRES_URL")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	schema = "t_" + strings.ToLower(rand.Text()[:16])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		admin.Close()
		t.Fatalf("create schema on TEST_POSTGRES_URL: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}
