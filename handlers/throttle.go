package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/authsvc/throttle"
)

// Throttle is how the server limits password guessing, as @nestjs/throttler's
// ThrottlerGuard would with two throttlers: "default", keyed by the client's
// address, and "account", keyed by the email of a login. Refresh, logout, me,
// health and metrics are never limited.
type Throttle struct {
	Limiter      throttle.Limiter
	LoginIP      throttle.Rate // logins per client address
	LoginAccount throttle.Rate // logins per account (the lower-cased email)
	RegisterIP   throttle.Rate // registrations per client address
}

// throttlerMessage is ThrottlerException's message; the body is
// {"statusCode":429,"message":...}, as Nest writes an HttpException made
// from a string.
const throttlerMessage = "ThrottlerException: Too Many Requests"

var errThrottled = &httpError{status: http.StatusTooManyRequests, message: throttlerMessage, shape: parserShape}

// ipv6Prefix is how much of an IPv6 address names one client, as
// @nestjs/throttler counts it: one host has a whole /64.
const ipv6Prefix = 64

// throttler applies Throttle's rules; a nil *throttler limits nothing.
type throttler struct {
	Throttle
	rejected *prometheus.CounterVec
}

func newThrottler(t *Throttle, reg prometheus.Registerer) *throttler {
	if t == nil || t.Limiter == nil {
		return nil
	}
	th := &throttler{Throttle: *t, rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_throttled_total",
		Help: "Requests answered 429, by route and by the limit they hit: ip or account.",
	}, []string{"route", "limit"})}
	reg.MustRegister(th.rejected)
	return th
}

// clientIPs returns how the server reads a client's address: from the
// connection, or, for a connection from a trusted proxy, from the right-most
// X-Forwarded-For entry that is not itself a trusted proxy.
func clientIPs(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	// echo trusts loopback, link-local and private addresses by default:
	// only the configured ranges are trusted here.
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// byIP limits the requests of route (login or register) per client address, before
// anything else is done with them, invalid ones included (as a guard runs
// before Nest's pipes).
func (t *throttler) byIP(route string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if t == nil {
			return next
		}
		r := t.RegisterIP
		if route == "login" {
			r = t.LoginIP
		}
		return func(c echo.Context) error {
			if err := t.check(c, route, "ip", "", r, clientKey(c.RealIP())); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// account limits the logins of one account, whatever the address they come
// from, so that many addresses cannot share the guessing of one password.
func (t *throttler) account(c echo.Context, email string) error {
	if t == nil {
		return nil
	}
	return t.check(c, "login", "account", "-account", t.LoginAccount, strings.ToLower(email))
}

// check counts one request of key at rate r. It sets the X-RateLimit-*
// headers of the throttler whose header suffix is suffix and, past the
// limit, Retry-After (and Retry-After<suffix>) and returns the 429, as
// ThrottlerGuard does. Keys reach the limiter hashed: neither addresses
// nor emails are stored.
func (t *throttler) check(c echo.Context, route, limit, suffix string, r throttle.Rate, key string) error {
	sum := sha256.Sum256([]byte(key))
	res := t.Limiter.Allow(c.Request().Context(), route+":"+limit+":"+hex.EncodeToString(sum[:16]), r)
	// Set as Express writes them, "X-RateLimit-Limit" rather than Go's
	// canonical "X-Ratelimit-Limit": header names are case-insensitive, but
	// a drop-in replacement should not differ even there.
	h := c.Response().Header()
	set := func(name string, v int) { h[name] = []string{strconv.Itoa(v)} }
	if !res.Allowed {
		wait := ceilSeconds(res.RetryAfter)
		set("Retry-After", wait)
		if suffix != "" {
			set("Retry-After"+suffix, wait)
		}
		t.rejected.WithLabelValues(route, limit).Inc()
		return errThrottled
	}
	set("X-RateLimit-Limit"+suffix, res.Limit)
	set("X-RateLimit-Remaining"+suffix, res.Remaining)
	set("X-RateLimit-Reset"+suffix, ceilSeconds(res.ResetAfter))
	return nil
}

// ceilSeconds is d in whole seconds, rounded up, and at least 1.
func ceilSeconds(d time.Duration) int {
	return max(int(math.Ceil(d.Seconds())), 1)
}

// clientKey is what one client is counted by: its IPv4 address, or the /64
// of its IPv6 address (an IPv4-mapped IPv6 address is its IPv4 address).
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() || addr.IsLoopback() {
		return addr.String()
	}
	p, _ := addr.Prefix(ipv6Prefix)
	return p.String()
}
