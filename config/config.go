// Package config reads the service's settings from the environment, once, at start.
package config

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/authsvc/throttle"
)

// Variable is an environment variable the service reads.
type Variable struct {
	Name, Default, Meaning string
}

// Variables lists every variable Load reads, for the service's -h.
var Variables = []Variable{
	{"PORT", "3000", "listen port"},
	{"DATABASE_URL", "auth.db", "an SQLite file path or file: URI, or postgres://… (or a libpq key/value string) for PostgreSQL"},
	{"REDIS_URL", "unset", "redis://host:6379/0: a lock shared by several instances; unset: an in-process lock"},
	{"JWT_SECRET", "random", "HS256 secret of access tokens, at least 32 bytes, the same on every instance; unset: random per process"},
	{"JWT_SECRET_PREVIOUS", "unset", "a previous JWT_SECRET that still verifies access tokens, to rotate the secret"},
	{"JWT_EXPIRES_IN", "15m", "access-token lifetime (900, 15m, 12h, 7d, 1h30m)"},
	{"REFRESH_EXPIRES_IN", "7d", "refresh-token lifetime"},
	{"REFRESH_REUSE_WINDOW", "10s", "how long a rotated refresh token still returns its successor; at least LOCK_TIMEOUT"},
	{"LOCK_TIMEOUT", "5s", "longest wait for a token's lock held by a live holder; past it, 503"},
	{"MIGRATE_ON_START", "true", "apply pending schema migrations at start; false: refuse to start while any is pending"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "text", "text, or json for one JSON object per line"},
	{"THROTTLE", "on", "off: no limits on logins and registrations (load tests on one machine)"},
	{"THROTTLE_LOGIN_IP", "20/1m", "logins per client address"},
	{"THROTTLE_LOGIN_ACCOUNT", "5/1m", "logins per account (email)"},
	{"THROTTLE_REGISTER_IP", "5/1m", "registrations per client address"},
	{"TRUSTED_PROXIES", "none", "CIDRs or addresses of proxies whose X-Forwarded-For gives the client address"},
	{"BCRYPT_CONCURRENCY", "GOMAXPROCS", "password hashes computed at once"},
	{"BCRYPT_QUEUE_TIMEOUT", "5s", "longest wait for a turn to hash; past it, 503"},
	{"DB_MAX_CONNS", "20", "PostgreSQL connections per instance; all instances together must stay under the server's max_connections"},
	{"CORS_ORIGINS", "unset", "comma-separated origins allowed to call from a browser (* for any); unset: CORS off"},
	{"CORS_CREDENTIALS", "false", "true: allow credentials on cross-origin calls (needs explicit CORS_ORIGINS)"},
	{"BEHIND_TLS", "false", "true when a TLS-terminating proxy is in front: answers carry Strict-Transport-Security"},
	{"PPROF_ADDR", "unset", "host:port of a separate listener serving Go's profiles at /debug/pprof/ (e.g. 127.0.0.1:6060); unset: off"},
}

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

	Throttle             bool          // THROTTLE: on (default) or off
	ThrottleLoginIP      throttle.Rate // THROTTLE_LOGIN_IP: logins per client address (20/1m)
	ThrottleLoginAccount throttle.Rate // THROTTLE_LOGIN_ACCOUNT: logins per account (5/1m)
	ThrottleRegisterIP   throttle.Rate // THROTTLE_REGISTER_IP: registrations per client address (5/1m)
	// TrustedProxies (TRUSTED_PROXIES: CIDRs or addresses, comma-separated)
	// are the proxies whose X-Forwarded-For is believed; none by default.
	TrustedProxies     []*net.IPNet
	BcryptConcurrency  int           // BCRYPT_CONCURRENCY: hashes at once (GOMAXPROCS)
	BcryptQueueTimeout time.Duration // BCRYPT_QUEUE_TIMEOUT: longest wait for a turn to hash (5s)

	DBMaxConns      int      // DB_MAX_CONNS: PostgreSQL connections per instance (20)
	CORSOrigins     []string // CORS_ORIGINS: comma-separated origins, "*" for any; none: CORS off
	CORSCredentials bool     // CORS_CREDENTIALS: Access-Control-Allow-Credentials
	BehindTLS       bool     // BEHIND_TLS: a TLS-terminating proxy is in front (Strict-Transport-Security)
	// PprofAddr (PPROF_ADDR) is the host:port of a listener of its own that
	// serves net/http/pprof, never the public one; empty: no profiling endpoint.
	PprofAddr string
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
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		return Config{}, fmt.Errorf("DATABASE_URL: %w", err)
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
		{"REFRESH_REUSE_WINDOW", "10s", &c.ReuseWindow, false},
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
	if err := c.loadThrottle(getenv); err != nil {
		return Config{}, err
	}
	if err := c.loadHTTP(getenv); err != nil {
		return Config{}, err
	}
	c.DBMaxConns = 20
	if v := getenv("DB_MAX_CONNS"); v != "" {
		if c.DBMaxConns, err = strconv.Atoi(v); err != nil || c.DBMaxConns < 1 {
			return Config{}, fmt.Errorf("DB_MAX_CONNS: %q: want a whole number of at least 1", v)
		}
	}
	// Lifetimes that contradict each other would fail users in ways nobody
	// asked for: refuse them.
	switch {
	case c.AccessTTL > c.RefreshTTL:
		return Config{}, fmt.Errorf("JWT_EXPIRES_IN: %v is longer than REFRESH_EXPIRES_IN (%v): an access token would outlive the session it belongs to", c.AccessTTL, c.RefreshTTL)
	case c.ReuseWindow > c.RefreshTTL:
		return Config{}, fmt.Errorf("REFRESH_REUSE_WINDOW: %v is longer than REFRESH_EXPIRES_IN (%v)", c.ReuseWindow, c.RefreshTTL)
	case c.ReuseWindow < c.LockTimeout:
		// Concurrent refreshes of one token are answered within LOCK_TIMEOUT
		// of its rotation (the callers that waited for its lock); answered
		// after the window, they would count as reuse and log the user out.
		return Config{}, fmt.Errorf("REFRESH_REUSE_WINDOW: %v is shorter than LOCK_TIMEOUT (%v): a refresh that waited for its token's lock would be taken for reuse and log the user out; use at least %v", c.ReuseWindow, c.LockTimeout, c.LockTimeout)
	}
	return c, nil
}

// checkDatabaseURL accepts what the service can open: a postgres:// or
// postgresql:// URL, a libpq key/value string (host=… dbname=…, read as
// PostgreSQL), an sqlite:// or file: URI, or a plain file path. A URL of any
// other scheme, or a string with a colon that is none of these, is refused
// rather than taken for the name of a new SQLite file.
func checkDatabaseURL(v string) error {
	if scheme, _, ok := strings.Cut(v, "://"); ok {
		switch strings.ToLower(scheme) {
		case "postgres", "postgresql", "sqlite":
			return nil
		}
		return fmt.Errorf("unknown scheme %q: want postgres:// or postgresql://, an SQLite file path, or a file: URI", scheme)
	}
	if IsKeyValueDSN(v) || strings.HasPrefix(v, "file:") || strings.HasPrefix(v, "sqlite:") {
		return nil
	}
	if strings.ContainsAny(v, ":\x00") {
		return fmt.Errorf("%q is neither a URL nor an SQLite file path", v)
	}
	return nil
}

// IsKeyValueDSN reports whether v is a libpq key/value connection string
// such as "host=db dbname=auth user=auth".
func IsKeyValueDSN(v string) bool {
	first, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	key, _, ok := strings.Cut(first, "=")
	if !ok {
		return false
	}
	switch key {
	case "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "application_name", "connect_timeout", "options", "search_path":
		return true
	}
	return false
}

// loadThrottle reads the limits on logins and registrations and the bounds
// of password hashing.
func (c *Config) loadThrottle(getenv func(string) string) error {
	switch v := getenv("THROTTLE"); strings.ToLower(v) {
	case "", "on":
		c.Throttle = true
	case "off":
	default:
		return fmt.Errorf("THROTTLE: %q: want on or off", v)
	}
	for _, r := range []struct {
		name, fallback string
		dst            *throttle.Rate
	}{
		{"THROTTLE_LOGIN_IP", "20/1m", &c.ThrottleLoginIP},
		{"THROTTLE_LOGIN_ACCOUNT", "5/1m", &c.ThrottleLoginAccount},
		{"THROTTLE_REGISTER_IP", "5/1m", &c.ThrottleRegisterIP},
	} {
		v := getenv(r.name)
		if v == "" {
			v = r.fallback
		}
		rate, err := throttle.ParseRate(v, ParseDuration)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		*r.dst = rate
	}
	for _, p := range strings.FieldsFunc(getenv("TRUSTED_PROXIES"), func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := ipNet(p)
		if err != nil {
			return fmt.Errorf("TRUSTED_PROXIES: %q: want CIDRs or addresses, comma-separated", p)
		}
		c.TrustedProxies = append(c.TrustedProxies, n)
	}
	c.BcryptConcurrency = runtime.GOMAXPROCS(0)
	if v := getenv("BCRYPT_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("BCRYPT_CONCURRENCY: %q: want a whole number of at least 1", v)
		}
		c.BcryptConcurrency = n
	}
	c.BcryptQueueTimeout = 5 * time.Second
	if v := getenv("BCRYPT_QUEUE_TIMEOUT"); v != "" {
		d, err := ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("BCRYPT_QUEUE_TIMEOUT: %q must be a positive duration", v)
		}
		c.BcryptQueueTimeout = d
	}
	return nil
}

// loadHTTP reads what browsers see, CORS and whether TLS is in front, and
// the operators' profiling listener.
func (c *Config) loadHTTP(getenv func(string) string) error {
	for _, o := range strings.FieldsFunc(getenv("CORS_ORIGINS"), func(r rune) bool { return r == ',' || r == ' ' }) {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("CORS_ORIGINS: %q: want origins such as https://app.example.com, or *", o)
		}
		c.CORSOrigins = append(c.CORSOrigins, strings.TrimSuffix(o, "/"))
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"CORS_CREDENTIALS", &c.CORSCredentials}, {"BEHIND_TLS", &c.BehindTLS}} {
		if v := getenv(b.name); v != "" {
			var err error
			if *b.dst, err = strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s: %q: want true or false", b.name, v)
			}
		}
	}
	if v := getenv("PPROF_ADDR"); v != "" {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			return fmt.Errorf("PPROF_ADDR: %q: want host:port, e.g. 127.0.0.1:6060", v)
		}
		c.PprofAddr = v
	}
	if c.CORSCredentials && slices.Contains(c.CORSOrigins, "*") {
		// Browsers refuse credentials with "*"; echoing every origin back
		// instead would let any site act with a user's credentials.
		return fmt.Errorf("CORS_CREDENTIALS: credentials cannot be allowed for CORS_ORIGINS=*; list the origins")
	}
	return nil
}

// ipNet reads a CIDR, or an address as the network of that address alone.
func ipNet(s string) (*net.IPNet, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		p = p.Masked()
		return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, err
	}
	a = a.Unmap().WithZone("")
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}, nil
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
