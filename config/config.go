// Package config reads the service's settings from the environment, once, at start.
package config

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/authsvc/throttle"
)

// Config is every setting the service reads from its environment.
type Config struct {
	Port               int
	DatabaseURL        string // a file path or file: URI selects SQLite, postgres:// PostgreSQL
	RedisURL           string // empty: in-process locks
	JWTSecret          []byte
	JWTSecretGenerated bool // JWT_SECRET was unset and JWTSecret is random
	AccessTTL          time.Duration
	RefreshTTL         time.Duration
	ReuseWindow        time.Duration
	LockTimeout        time.Duration
	LogLevel           slog.Level // LOG_LEVEL: debug, info (default), warn, error
	LogJSON            bool       // LOG_FORMAT=json; text by default

	Throttle             bool          // THROTTLE: on (default) or off
	ThrottleLoginIP      throttle.Rate // THROTTLE_LOGIN_IP: logins per client address (20/1m)
	ThrottleLoginAccount throttle.Rate // THROTTLE_LOGIN_ACCOUNT: logins per account (5/1m)
	ThrottleRegisterIP   throttle.Rate // THROTTLE_REGISTER_IP: registrations per client address (5/1m)
	// TrustedProxies (TRUSTED_PROXIES: CIDRs or addresses, comma-separated)
	// are the proxies whose X-Forwarded-For is believed; none by default.
	TrustedProxies     []*net.IPNet
	BcryptConcurrency  int           // BCRYPT_CONCURRENCY: hashes at once (GOMAXPROCS)
	BcryptQueueTimeout time.Duration // BCRYPT_QUEUE_TIMEOUT: longest wait for a turn to hash (5s)
}

// Load reads the configuration through getenv (os.Getenv in production). It
// returns an error naming the variable for a value it cannot read.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL: getenv("DATABASE_URL"),
		RedisURL:    getenv("REDIS_URL"),
		JWTSecret:   []byte(getenv("JWT_SECRET")),
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
	if err := c.loadThrottle(getenv); err != nil {
		return Config{}, err
	}
	return c, nil
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
