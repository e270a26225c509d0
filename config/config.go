// Package config reads the service's settings from the environment, once, at start.
package config

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// MinSecretBytes is the shortest JWT_SECRET accepted: HS256's key size.
const MinSecretBytes = 32

// Config is every setting the service reads from its environment.
type Config struct {
	Port               int
	DatabaseURL        string // a file path or file: URI selects SQLite, postgres:// PostgreSQL
	RedisURL           string // empty: in-process locks
	JWTSecret          []byte
	JWTSecretGenerated bool   // JWT_SECRET was unset and JWTSecret is random
	JWTSecretPrevious  []byte // JWT_SECRET_PREVIOUS: still verifies access tokens, signs nothing
	AccessTTL          time.Duration
	RefreshTTL         time.Duration
	ReuseWindow        time.Duration
	LockTimeout        time.Duration
	LogLevel           slog.Level // LOG_LEVEL: debug, info (default), warn, error
	LogJSON            bool       // LOG_FORMAT=json; text by default
	MigrateOnStart     bool       // MIGRATE_ON_START (default true); false: migrations run as a step of their own
}

// Load reads the configuration through getenv (os.Getenv in production). It
// returns an error naming the variable for a value it cannot read.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:       getenv("DATABASE_URL"),
		RedisURL:          getenv("REDIS_URL"),
		JWTSecret:         []byte(getenv("JWT_SECRET")),
		JWTSecretPrevious: []byte(getenv("JWT_SECRET_PREVIOUS")),
	}
	// HS256 with a short secret falls to an offline brute force from any
	// one access token, after which anyone can sign tokens for every user.
	for _, v := range []struct {
		name   string
		secret []byte
	}{{"JWT_SECRET", c.JWTSecret}, {"JWT_SECRET_PREVIOUS", c.JWTSecretPrevious}} {
		if n := len(v.secret); n > 0 && n < MinSecretBytes {
			return Config{}, fmt.Errorf("%s: %d bytes is too short to sign tokens safely; use at least %d random bytes (e.g. openssl rand -hex 32)", v.name, n, MinSecretBytes)
		}
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "auth.db"
	}
	if len(c.JWTSecret) == 0 {
		c.JWTSecret = []byte(rand.Text() + rand.Text())
		c.JWTSecretGenerated = true
	}

	var err error
	if c.Port, err = port(getenv("PORT")); err != nil {
		return Config{}, err
	}
	c.MigrateOnStart = true
	if v := getenv("MIGRATE_ON_START"); v != "" {
		if c.MigrateOnStart, err = strconv.ParseBool(v); err != nil {
			return Config{}, fmt.Errorf("MIGRATE_ON_START: %q: want true or false", v)
		}
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return Config{}, fmt.Errorf("LOG_LEVEL: %q: want debug, info, warn or error", v)
		}
	}
	switch v := getenv("LOG_FORMAT"); v {
	case "", "text":
	case "json":
		c.LogJSON = true
	default:
		return Config{}, fmt.Errorf("LOG_FORMAT: %q: want text or json", v)
	}
	for _, d := range []struct {
		name, fallback string
		dst            *time.Duration
		zeroOK         bool
	}{
		{"JWT_EXPIRES_IN", "15m", &c.AccessTTL, false},
		{"REFRESH_EXPIRES_IN", "7d", &c.RefreshTTL, false},
		{"REFRESH_REUSE_WINDOW", "10s", &c.ReuseWindow, true},
		{"LOCK_TIMEOUT", "5s", &c.LockTimeout, false},
	} {
		v := getenv(d.name)
		if v == "" {
			v = d.fallback
		}
		dur, err := ParseDuration(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", d.name, err)
		}
		if dur < 0 || (dur == 0 && !d.zeroOK) {
			return Config{}, fmt.Errorf("%s: %q must be positive", d.name, v)
		}
		*d.dst = dur
	}
	return c, nil
}

func port(v string) (int, error) {
	if v == "" {
		return 3000, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("PORT: %q is not a port number (0-65535)", v)
	}
	return p, nil
}
