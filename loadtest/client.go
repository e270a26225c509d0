package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// maxBody is the most of an answer's body that is kept; the contract's bodies
// are a few hundred bytes.
const maxBody = 1 << 20

// client talks to one target over one pool of keep-alive connections. It is
// safe for concurrent use.
//
// It is fasthttp's client, not net/http's: the load tool shares the machine
// with the server it measures, and every microsecond of CPU it spends on a
// request is taken from that server. net/http's client hands each request to
// two goroutines of its connection (a writer and a reader) and back, three
// context switches; fasthttp writes and reads in the caller's goroutine and
// reuses its buffers, and costs half the CPU per request (BENCHMARKS.md).
type client struct {
	base    string // the target's URL, without a trailing slash
	timeout time.Duration
	fc      *fasthttp.Client

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, closed when a request's context ends
	dialed atomic.Int64          // connections made: the target accepts them
}

// newClient returns a client that keeps up to conns connections to base
// (requests beyond them wait for one) and gives every request at most
// timeout.
func newClient(base string, conns int, timeout time.Duration) *client {
	c := &client{base: base, timeout: timeout, conns: make(map[net.Conn]struct{})}
	dialer := &net.Dialer{Timeout: min(5*time.Second, timeout), KeepAlive: 30 * time.Second}
	c.fc = &fasthttp.Client{
		// net.Dialer's errors (a *net.OpError around the errno, a
		// *net.DNSError) are the ones reason puts in words.
		Dial: func(addr string) (net.Conn, error) {
			conn, err := dialer.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			c.dialed.Add(1)
			return c.track(conn), nil
		},
		MaxConnsPerHost:               max(conns, 1),
		MaxConnWaitTimeout:            timeout,
		MaxIdleConnDuration:           30 * time.Second,
		MaxResponseBodySize:           maxBody,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
	}
	return c
}

// close closes the idle connections.
func (c *client) close() { c.fc.CloseIdleConnections() }

// trackedConn is a connection the client can close from outside, to end the
// requests on it when their context ends (fasthttp has no contexts).
type trackedConn struct {
	net.Conn
	c    *client
	once sync.Once
}

func (c *client) track(conn net.Conn) net.Conn {
	t := &trackedConn{Conn: conn, c: c}
	c.mu.Lock()
	c.conns[t] = struct{}{}
	c.mu.Unlock()
	return t
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}

// abort closes every open connection: the requests under way on them return
// at once with an error.
func (c *client) abort() {
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
}

// answer is an HTTP response, its body read whole (up to maxBody).
type answer struct {
	status int
	body   []byte
}

// do sends one request, body encoded as JSON unless nil, and reads the
// answer. It returns when the answer came, the timeout passed or ctx ended
// (then with an error, and the client's connections closed: a context ends
// when the whole run does).
func (c *client) do(ctx context.Context, method, path string, body any) (answer, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod(method)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(b)
	}
	if err := ctx.Err(); err != nil {
		return answer{}, err
	}
	stop := context.AfterFunc(ctx, c.abort)
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := c.fc.DoDeadline(req, res, deadline)
	if !stop() { // ctx ended: abort ran, or is running
		return answer{}, ctx.Err()
	}
	if err != nil {
		return answer{}, err
	}
	return answer{status: res.StatusCode(), body: bytes.Clone(res.Body())}, nil
}

// call posts body to path. A success is a 2xx answer whose JSON body has a
// refreshToken, which the outcome carries.
func (c *client) call(ctx context.Context, path string, body any) (outcome, answer) {
	start := time.Now()
	a, err := c.do(ctx, http.MethodPost, path, body)
	o := outcome{status: a.status, latency: time.Since(start), err: err}
	switch {
	case err != nil:
		o.message = transportMessage(err)
		o.canceled = ctx.Err() != nil
	case a.status < 200 || a.status > 299:
		o.message = messageOf(a.body, a.status)
	default:
		if o.token = refreshTokenOf(a.body); o.token == "" {
			o.message = "no refreshToken in the answer"
		}
	}
	return o, a
}

// refresh presents token to POST /auth/refresh.
func (c *client) refresh(ctx context.Context, token string) outcome {
	o, _ := c.call(ctx, "/auth/refresh", map[string]string{"refreshToken": token})
	return o
}

// login signs acct in during a run; a failure is an outcome to count.
func (c *client) login(ctx context.Context, acct account) outcome {
	o, _ := c.call(ctx, "/auth/login", map[string]string{"email": acct.email, "password": acct.password})
	return o
}

// register creates acct and returns its refresh token. It is the first
// request of a run, so its errors say whether the target can be used at all:
// see signIn.
func (c *client) register(ctx context.Context, acct account) (string, error) {
	return c.signIn(ctx, "/auth/register", map[string]string{"email": acct.email, "password": acct.password, "name": "loadtest"})
}

// session signs acct in and returns its refresh token; its errors are
// those of signIn.
func (c *client) session(ctx context.Context, acct account) (string, error) {
	return c.signIn(ctx, "/auth/login", map[string]string{"email": acct.email, "password": acct.password})
}

// signIn posts body to path and returns the refresh token of the answer. Its
// error is ctx.Err() when ctx ended, an *unreachableError when no answer
// came, and a *targetError when the answer was not a session.
func (c *client) signIn(ctx context.Context, path string, body any) (string, error) {
	o, a := c.call(ctx, path, body)
	switch {
	case o.ok():
		return o.token, nil
	case o.canceled:
		return "", ctx.Err()
	case o.err != nil && o.status == 0:
		// A connection made means the server accepts them: a timeout is then a
		// silent server, not a missing one.
		return "", &unreachableError{url: c.base, err: o.err, timeout: c.timeout, connected: c.dialed.Load() > 0}
	}
	return "", &targetError{method: http.MethodPost, url: c.base + path, status: a.status, body: a.body, foreign: !refusal(a)}
}

// warm opens up to n keep-alive connections, so that the requests of a storm
// leave together instead of waiting for connections to be dialled: n
// concurrent GET /health, released together. Their answers do not matter.
func (c *client) warm(ctx context.Context, n int) {
	start := make(chan struct{})
	done := make(chan struct{}, n)
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			_, _ = c.do(ctx, http.MethodGet, "/health", nil) // only the connection matters
		}()
	}
	close(start)
	for range n {
		<-done
	}
}

// unreachableError is the error of a target that did not answer at all.
type unreachableError struct {
	url       string
	err       error
	timeout   time.Duration // the --timeout the request had
	connected bool          // the request got a connection: the server accepts them, but did not answer
}

func (e *unreachableError) Error() string {
	if e.connected && timedOut(e.err) {
		return fmt.Sprintf("%s accepted a connection but gave no answer within %s (--timeout): it does not speak the authsvc HTTP contract",
			e.url, e.timeout)
	}
	return fmt.Sprintf("cannot reach %s: %s", e.url, reason(e.err))
}
func (e *unreachableError) Unwrap() error { return e.err }

// targetError is the error of a target that answered, but not with a session.
// foreign says the answer is not even the contract's error shape: the server
// does not speak the authsvc HTTP contract (a missing route, a body that is
// not JSON, a success without a refresh token).
type targetError struct {
	method, url string
	status      int
	body        []byte
	foreign     bool
}

func (e *targetError) Error() string {
	if e.foreign {
		return fmt.Sprintf("%s %s answered %d %q: the server does not speak the authsvc HTTP contract (see docs/API.md)",
			e.method, e.url, e.status, bodyStart(e.body, 80))
	}
	msg := fmt.Sprintf("%s %s answered %d: %s", e.method, e.url, e.status, messageOf(e.body, e.status))
	if e.status == http.StatusTooManyRequests {
		msg += " (the server limits registrations and logins per client address: start it with THROTTLE=off to load it)"
	}
	return msg
}

// refusal reports whether a is an error of the contract: a 4xx or 5xx status
// other than 404 and 405 (a route that exists), with a NestJS error body.
func refusal(a answer) bool {
	if a.status < 400 || a.status == http.StatusNotFound || a.status == http.StatusMethodNotAllowed {
		return false
	}
	var v struct {
		StatusCode *int            `json:"statusCode"`
		Message    json.RawMessage `json:"message"`
	}
	return json.Unmarshal(a.body, &v) == nil && v.StatusCode != nil && len(v.Message) > 0
}

// refreshTokenOf returns the refreshToken of a JSON body, or "".
func refreshTokenOf(body []byte) string {
	var v struct {
		RefreshToken any `json:"refreshToken"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	s, _ := v.RefreshToken.(string)
	return s
}

// messageOf says why an answer is a failure: the "message" of a NestJS error
// body (an array of validation messages is joined with "; "), else the start
// of the body, else the status text.
func messageOf(body []byte, status int) string {
	var v struct {
		Message any `json:"message"`
	}
	if json.Unmarshal(body, &v) == nil {
		switch m := v.Message.(type) {
		case string:
			if m != "" {
				return m
			}
		case []any:
			parts := make([]string, len(m))
			for i, p := range m {
				parts[i] = fmt.Sprint(p)
			}
			if len(parts) > 0 {
				return strings.Join(parts, "; ")
			}
		}
	}
	if s := bodyStart(body, 80); s != "" {
		return s
	}
	if s := http.StatusText(status); s != "" {
		return s
	}
	return fmt.Sprintf("status %d", status)
}

// bodyStart returns the first n runes of body on one line, "…" marking a cut.
func bodyStart(body []byte, n int) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "\uFFFD")), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// transportMessage is the text of a transport error without the method and
// URL that net/http puts in front, which would make every failure unique.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// reason says in a few words why no answer came: "connection refused", "no
// answer within 10s", "lookup nope.invalid: no such host".
func reason(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &dns):
		return dns.Error()
	case timedOut(err):
		return "no answer in time: " + transportMessage(err)
	}
	return transportMessage(err)
}

// timedOut reports whether err is a timeout: a net.Error that says so, or
// fasthttp's ErrTimeout, which has the Timeout method alone.
func timedOut(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
