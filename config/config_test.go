package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"900", 900 * time.Second},
		{"15m", 15 * time.Minute},
		{"12h", 12 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{"1y", 8766 * time.Hour},
		{"250ms", 250 * time.Millisecond},
		{"10s", 10 * time.Second},
		{"1.5h", 90 * time.Minute},
		{".5m", 30 * time.Second},
		{"2 days", 48 * time.Hour},
		{"1 Hour", time.Hour},
		{"30 mins", 30 * time.Minute},
		{" 15m ", 15 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"0", 0},
		{"-1m", -time.Minute},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "abc", "15 parsecs", "1e400d", "m", "15mm", "1..5h"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, nil; want an error", in, got)
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if c.Port != 3000 || c.DatabaseURL != "auth.db" || c.RedisURL != "" ||
		c.AccessTTL != 15*time.Minute || c.RefreshTTL != 7*24*time.Hour ||
		c.ReuseWindow != 10*time.Second || c.LockTimeout != 5*time.Second || c.LogLevel != slog.LevelInfo || c.LogJSON || !c.MigrateOnStart || c.PprofAddr != "" {
		t.Errorf("Load() = %+v, want the documented defaults", c)
	}
	if !c.JWTSecretGenerated || len(c.JWTSecret) < 32 {
		t.Errorf("no JWT_SECRET: generated = %v, %d bytes; want a random secret of 32 bytes or more", c.JWTSecretGenerated, len(c.JWTSecret))
	}
	other, _ := Load(env(nil))
	if string(other.JWTSecret) == string(c.JWTSecret) {
		t.Error("two loads without JWT_SECRET gave the same secret")
	}
}

func TestLoad(t *testing.T) {
	c, err := Load(env(map[string]string{
		"PORT": "8080", "DATABASE_URL": "postgres://x", "REDIS_URL": "redis://y", "JWT_SECRET": "s3cret-s3cret-s3cret-s3cret-s3cret",
		"JWT_EXPIRES_IN": "900", "REFRESH_EXPIRES_IN": "30d", "REFRESH_REUSE_WINDOW": "1s", "LOCK_TIMEOUT": "250ms",
		"LOG_LEVEL": "warn", "LOG_FORMAT": "json", "MIGRATE_ON_START": "false", "PPROF_ADDR": "127.0.0.1:6060",
	}))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if c.Port != 8080 || c.DatabaseURL != "postgres://x" || c.RedisURL != "redis://y" || string(c.JWTSecret) != "s3cret-s3cret-s3cret-s3cret-s3cret" ||
		c.JWTSecretGenerated || c.AccessTTL != 15*time.Minute || c.RefreshTTL != 30*24*time.Hour ||
		c.ReuseWindow != time.Second || c.LockTimeout != 250*time.Millisecond || c.LogLevel != slog.LevelWarn || !c.LogJSON || c.MigrateOnStart ||
		c.PprofAddr != "127.0.0.1:6060" {
		t.Errorf("Load() = %+v", c)
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"PORT", "http"}, {"PORT", "70000"},
		{"JWT_EXPIRES_IN", "soon"}, {"JWT_EXPIRES_IN", "0"}, {"REFRESH_EXPIRES_IN", "-1d"},
		{"REFRESH_REUSE_WINDOW", "-5s"}, {"LOCK_TIMEOUT", "0"},
		{"LOG_LEVEL", "loud"}, {"LOG_FORMAT", "xml"}, {"MIGRATE_ON_START", "maybe"},
		{"JWT_SECRET", "abc"}, {"JWT_SECRET", strings.Repeat("x", 31)}, {"JWT_SECRET_PREVIOUS", "old"},
		{"PPROF_ADDR", "6060"}, {"PPROF_ADDR", "127.0.0.1"}, {"PPROF_ADDR", "127.0.0.1:"},
	} {
		_, err := Load(env(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("Load(%s=%q) = %v, want an error naming %s", tc.name, tc.value, err, tc.name)
		}
	}
}

func TestLoadSecrets(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": strings.Repeat("n", 32), "JWT_SECRET_PREVIOUS": strings.Repeat("o", 40)}))
	if err != nil || string(c.JWTSecretPrevious) != strings.Repeat("o", 40) || c.JWTSecretGenerated {
		t.Errorf("Load(32-byte secret, previous secret) = %+v, %v", c, err)
	}
	_, err = Load(env(map[string]string{"JWT_SECRET": "abc"}))
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("Load(JWT_SECRET=abc) = %v, want an error saying 32 bytes are needed", err)
	}
}

func TestLoadRefusesWhatItCannotHonour(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"mistyped scheme", map[string]string{"DATABASE_URL": "postgress://db/auth"}, `DATABASE_URL: unknown scheme "postgress"`},
		{"unsupported database", map[string]string{"DATABASE_URL": "mysql://db/auth"}, `DATABASE_URL: unknown scheme "mysql"`},
		{"garbage", map[string]string{"DATABASE_URL": "::garbage::"}, "DATABASE_URL: \"::garbage::\" is neither a URL nor an SQLite file path"},
		{"access outlives refresh", map[string]string{"JWT_EXPIRES_IN": "2h", "REFRESH_EXPIRES_IN": "1h"}, "JWT_EXPIRES_IN: 2h0m0s is longer than REFRESH_EXPIRES_IN"},
		{"window outlives refresh", map[string]string{"REFRESH_REUSE_WINDOW": "2h", "REFRESH_EXPIRES_IN": "1h"}, "REFRESH_REUSE_WINDOW: 2h0m0s is longer than REFRESH_EXPIRES_IN"},
		{"no window", map[string]string{"REFRESH_REUSE_WINDOW": "0"}, "REFRESH_REUSE_WINDOW"},
		{"window shorter than the lock wait", map[string]string{"REFRESH_REUSE_WINDOW": "2s"}, "REFRESH_REUSE_WINDOW: 2s is shorter than LOCK_TIMEOUT (5s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load(%v) = %v, want one line containing %q", tc.env, err, tc.want)
			}
		})
	}
	for _, ok := range []string{"auth.db", "data/auth.db", "/var/lib/authsvc/auth.db", "file:auth.db?_synchronous=NORMAL", "sqlite://auth.db",
		"postgres://u@db/auth", "postgresql://db/auth?sslmode=disable", "host=db dbname=auth user=auth sslmode=disable"} {
		if _, err := Load(env(map[string]string{"DATABASE_URL": ok})); err != nil {
			t.Errorf("Load(DATABASE_URL=%q) = %v, want it accepted", ok, err)
		}
	}
}

// Variables, which -h prints, lists exactly the variables Load reads.
func TestVariablesListsWhatLoadReads(t *testing.T) {
	read := map[string]bool{}
	if _, err := Load(func(k string) string { read[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, v := range Variables {
		listed[v.Name] = true
		if !read[v.Name] {
			t.Errorf("Variables lists %s, which Load does not read", v.Name)
		}
	}
	for k := range read {
		if !listed[k] {
			t.Errorf("Load reads %s, which Variables does not list", k)
		}
	}
}
