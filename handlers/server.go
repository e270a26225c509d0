// Package handlers is the HTTP edge of the service: an echo server that
// speaks the HTTP contract of the NestJS auth module it replaces (routes,
// answers, error shapes, headers, throttling) over package auth. Request
// bodies are read by package bodyparser and checked against the DTOs by
// package classvalidator; handlers receive typed input.
package handlers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/openapi"
)

// Pinger checks that a dependency answers. *models.DB and *mutex.Redis satisfy it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// LockStats reports on the lock service. *mutex.Memory and *mutex.Redis satisfy it.
type LockStats interface {
	ActiveLockCount() int
}

// Deps is what the server is built from.
type Deps struct {
	Auth     *auth.Service
	DB       Pinger
	Lock     Pinger // the lock service to health-check; nil for the in-process lock
	Locks    LockStats
	Registry *prometheus.Registry // /metrics serves it; the server adds its own collectors
	Logger   *slog.Logger
	Throttle *Throttle // nil: no limits
	// TrustedProxies are the addresses whose X-Forwarded-For is believed;
	// none: a client's address is its connection's.
	TrustedProxies []*net.IPNet
	CORS           CORS // the zero value: no CORS headers
	// BehindTLS: a TLS-terminating proxy is in front, so answers carry
	// Strict-Transport-Security.
	BehindTLS bool
}

type server struct {
	auth     *auth.Service
	db       Pinger
	lock     Pinger
	registry *prometheus.Registry
	log      *slog.Logger
	requests *prometheus.HistogramVec
	throttle *throttler
}

// NewServer returns the HTTP server of the service, routes, error handling,
// logging and metrics installed. It does not listen; run it with Start or use
// it as an http.Handler.
func NewServer(d Deps) *echo.Echo {
	s := &server{
		auth:     d.Auth,
		db:       d.DB,
		lock:     d.Lock,
		registry: d.Registry,
		log:      d.Logger.With("component", "http"),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "HTTP requests by method, route and status, with their duration.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route", "status"}),
	}
	d.Registry.MustRegister(s.requests, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "auth_refresh_active_locks",
		Help: "Per-token refresh locks currently held.",
	}, func() float64 { return float64(d.Locks.ActiveLockCount()) }))

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = clientIPs(d.TrustedProxies)
	s.throttle = newThrottler(d.Throttle, d.Registry)
	e.Server.ReadHeaderTimeout = 10 * time.Second
	e.Server.ReadTimeout = 30 * time.Second
	e.Server.WriteTimeout = 30 * time.Second
	e.Server.IdleTimeout = 60 * time.Second
	// Node answers 431 past 16 KB of request line and headers; net/http
	// allows 4 KB more than MaxHeaderBytes before it does.
	e.Server.MaxHeaderBytes = 16<<10 - 4<<10
	// net/http answers "OPTIONS *" itself (200, no body); Express gives its 404.
	e.Server.DisableGeneralOptionsHandler = true
	// observe first: every request, a panicking one too, is logged and
	// measured once.
	pre := []echo.MiddlewareFunc{s.observe, s.recoverPanics, secureHeaders(d.BehindTLS)}
	if len(d.CORS.Origins) > 0 {
		pre = append(pre, cors(d.CORS))
	}
	e.Pre(append(pre, expressPath)...)
	e.Use(parseBody) // after routing, for every route and for none
	s.routes(e, openapi.NewDocs(contentSecurityPolicy(d.BehindTLS)))
	return e
}

// expressPath makes routing match as Express's does: path case does not
// matter, and one trailing slash and a fragment are ignored. The 404 message
// keeps the target as sent (RequestURI is left alone).
func expressPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.ContainsFunc(c.Request().RequestURI, func(r rune) bool { return r >= utf8.RuneSelf }) {
			// Node's HTTP parser refuses raw non-ASCII bytes in the target
			// with a bare 400 and closes the connection; net/http lets them in.
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return c.NoContent(http.StatusBadRequest)
		}
		u := c.Request().URL
		u.Path = expressNormalize(u.Path)
		if u.RawPath != "" {
			u.RawPath = expressNormalize(u.RawPath)
		}
		return next(c)
	}
}

func expressNormalize(p string) string {
	// Node's url.parse takes a raw '#' for the start of a fragment, which
	// routing ignores; net/http leaves it in the path.
	p, _, _ = strings.Cut(p, "#")
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	return strings.ToLower(p)
}

// recoverPanics turns a panic in a handler into a 500 whose log line (see
// observe) names the panic; the client sees nothing of it.
func (s *server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic in handler: %v: %w", r, errInternal)
			}
		}()
		return next(c)
	}
}

// observe gives each request an ID (X-Request-Id, taken from the client when
// it sends a sane one), logs it once it is answered and records its metrics.
// It logs the path, never the query, the headers or the body, where tokens travel.
func (s *server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !saneRequestID(id) {
			id = rand.Text()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)

		err := next(c)
		if err != nil {
			c.Error(err) // answered here, so the log line below has the status
		}
		status := c.Response().Status
		ctx := c.Request().Context()
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// The client closed the connection before the answer: nginx's
			// 499, not a failure of the service (nothing was written).
			status = statusClientClosed
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.requests.WithLabelValues(methodLabel(c.Request().Method), route, strconv.Itoa(status)).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		switch {
		case status == http.StatusServiceUnavailable:
			level = slog.LevelWarn // asked to retry: load shedding, not a fault
		case status >= 500 && status != statusClientClosed:
			level = slog.LevelError
		}
		if !s.log.Enabled(ctx, level) {
			return nil
		}
		// Typed attributes in an array on the stack: LogAttrs with
		// slog.Attr values boxes nothing, where Log's key-value pairs
		// allocate for each value that is not already an interface.
		attrs := [8]slog.Attr{slog.String("request_id", id), slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path), slog.String("route", route), slog.Int("status", status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.String("ip", c.RealIP())}
		n := 7
		if err != nil && (status >= 500 || status == statusClientClosed) {
			attrs[n] = slog.String("error", err.Error()) // what the client was not told
			n++
		}
		s.log.LogAttrs(ctx, level, "request", attrs[:n]...)
		return nil
	}
}

// statusClientClosed is nginx's status for a request whose client went away
// before the answer.
const statusClientClosed = 499

// methodLabel is the method as a metric label, from a fixed set: a client
// may send any token as its method, and each distinct label is a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// writeJSON writes v as Express's res.json does: no trailing newline, <, >
// and & unescaped, charset in the content type.
func writeJSON(c echo.Context, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return writeJSONBytes(c, status, jsLineSeparators(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))))
}

// writeJSONBytes writes b, JSON already, with Express's headers for it.
func writeJSONBytes(c echo.Context, status int, b []byte) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/json; charset=utf-8")
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(b)))
	c.Response().WriteHeader(status)
	_, err := c.Response().Write(b)
	return err
}

// jsLineSeparators undoes encoding/json's escaping of U+2028 and U+2029,
// which it does even with SetEscapeHTML(false): JSON.stringify writes them
// raw. Every backslash in encoder output starts an escape, so skipping each
// escape whole never mistakes an escaped backslash followed by "u2028".
func jsLineSeparators(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		if s := b[i+1:]; len(s) >= 5 && (string(s[:5]) == "u2028" || string(s[:5]) == "u2029") {
			out = append(out, 0xE2, 0x80, 0xA8+(s[4]-'8'))
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
