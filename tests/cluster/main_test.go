package cluster

import (
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

const (
	postgresEnv     = "TEST_POSTGRES_URL"
	redisServerPath = "/usr/bin/redis-server"
)

// servicePath is the service binary TestMain built, or "" when the
// prerequisites are missing and every test skips.
var servicePath string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if _, err := os.Stat(redisServerPath); os.Getenv(postgresEnv) == "" || err != nil {
		return m.Run() // every test skips, naming what it lacks: no build for nothing
	}
	dir, err := os.MkdirTemp("", "authsvc-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if servicePath, err = buildService(dir); err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests:", err)
		return 1
	}
	return m.Run()
}

// buildService builds the service into dir with scripts/build.sh, the build
// the container image ships, so the tests run what is deployed. The first
// build compiles go-sqlite3 with cgo, which takes minutes; the build cache
// keeps it.
func buildService(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	root := filepath.Dir(gomod)
	bin := filepath.Join(dir, "authsvc")
	cmd := exec.Command(filepath.Join(root, "scripts", "build.sh"), bin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/build.sh: %w\n%s", err, out)
	}
	return bin, nil
}

// requirePrereqs skips the test without TEST_POSTGRES_URL or redis-server,
// and returns TEST_POSTGRES_URL.
func requirePrereqs(t *testing.T) string {
	t.Helper()
	base := os.Getenv(postgresEnv)
	if base == "" {
		t.Skip(postgresEnv + " is not set")
	}
	if _, err := os.Stat(redisServerPath); err != nil {
		t.Skip(redisServerPath + " is not installed")
	}
	if servicePath == "" {
		t.Fatal("the service binary was not built")
	}
	return base
}

// freshDatabase creates an empty database on base's server and returns its
// URL; the database is dropped, connections and all, when the test ends.
func freshDatabase(t *testing.T, base string) string {
	t.Helper()
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("connect to %s: %v", postgresEnv, err)
	}
	name := "c_" + strings.ToLower(rand.Text()[:16])
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").Error; err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		if db, err := admin.DB(); err == nil {
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", postgresEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}
