package loadtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMessageOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"NestJS error", `{"statusCode":401,"message":"Invalid refresh token","error":"Unauthorized"}`, 401, "Invalid refresh token"},
		{"bare 500", `{"statusCode":500,"message":"Internal server error"}`, 500, "Internal server error"},
		{"naive server", `{"message":"record not found","statusCode":500}`, 500, "record not found"},
		{"validation array", `{"statusCode":400,"message":["refreshToken should not be empty","refreshToken must be a string"],"error":"Bad Request"}`, 400,
			"refreshToken should not be empty; refreshToken must be a string"},
		{"not JSON", "404 page not found\n", 404, "404 page not found"},
		{"JSON without message", `{"error":"nope"}`, 418, `{"error":"nope"}`},
		{"empty message", `{"message":""}`, 502, `{"message":""}`},
		{"empty body", "", 503, "Service Unavailable"},
		{"empty body, unknown status", "", 599, "status 599"},
		{"long body is cut", strings.Repeat("x", 100), 500, strings.Repeat("x", 80) + "…"},
		{"newlines folded", "<html>\n  <body>oops</body>\n</html>", 502, "<html> <body>oops</body> </html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := messageOf([]byte(tt.body), tt.status); got != tt.want {
				t.Errorf("messageOf(%q, %d) = %q, want %q", tt.body, tt.status, got, tt.want)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1:9/auth/refresh", Err: &net.OpError{
		Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
	if got, want := transportMessage(refused), "dial tcp 127.0.0.1:9: connect: connection refused"; got != want {
		t.Errorf("transportMessage = %q, want %q (no method and URL, so that failures group)", got, want)
	}
	e := &unreachableError{url: "http://127.0.0.1:9", err: refused}
	if got, want := e.Error(), "cannot reach http://127.0.0.1:9: connection refused"; got != want {
		t.Errorf("unreachableError = %q, want %q", got, want)
	}
	if !errors.Is(e, syscall.ECONNREFUSED) {
		t.Errorf("unreachableError does not unwrap to ECONNREFUSED")
	}
	if got, want := transportMessage(fmt.Errorf("unexpected EOF")), "unexpected EOF"; got != want {
		t.Errorf("transportMessage = %q, want %q", got, want)
	}
}

// timeoutErr is a net.Error that timed out, as http.Client's own timeout is.
type timeoutErr struct{}

func (timeoutErr) Error() string {
	return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
}
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestUnreachableTimeout: a server that took the connection and then said
// nothing is named as such, with the --timeout it had; a timeout before any
// connection is a target that cannot be reached.
func TestUnreachableTimeout(t *testing.T) {
	t.Parallel()
	err := &url.Error{Op: "Post", URL: "http://127.0.0.1:9/auth/register", Err: timeoutErr{}}
	silent := &unreachableError{url: "http://127.0.0.1:9", err: err, timeout: 1500 * time.Millisecond, connected: true}
	if got, want := silent.Error(), "http://127.0.0.1:9 accepted a connection but gave no answer within 1.5s (--timeout): it does not speak the authsvc HTTP contract"; got != want {
		t.Errorf("silent server: %q\nwant %q", got, want)
	}
	noConn := &unreachableError{url: "http://127.0.0.1:9", err: err, timeout: 1500 * time.Millisecond}
	if got := noConn.Error(); !strings.HasPrefix(got, "cannot reach http://127.0.0.1:9: no answer in time") {
		t.Errorf("no connection: %q, want it to say the target cannot be reached in time", got)
	}
}

func TestTargetError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		a      answer
		want   string
		speaks bool
	}{
		{"404 route", answer{404, []byte(`{"message":"Cannot POST /auth/register","error":"Not Found","statusCode":404}`)},
			`POST http://h/auth/register answered 404 "{\"message\":\"Cannot POST /auth/register\",\"error\":\"Not Found\",\"statusCode\":404}": the server does not speak the authsvc HTTP contract (see docs/API.md)`, false},
		{"plain 404", answer{404, []byte("404 page not found\n")},
			`POST http://h/auth/register answered 404 "404 page not found": the server does not speak the authsvc HTTP contract (see docs/API.md)`, false},
		{"html 200", answer{200, []byte("<html>hi</html>")},
			`POST http://h/auth/register answered 200 "<html>hi</html>": the server does not speak the authsvc HTTP contract (see docs/API.md)`, false},
		{"500 without shape", answer{500, []byte("oops")},
			`POST http://h/auth/register answered 500 "oops": the server does not speak the authsvc HTTP contract (see docs/API.md)`, false},
		{"contract refusal", answer{409, []byte(`{"statusCode":409,"message":"Email already registered","error":"Conflict"}`)},
			`POST http://h/auth/register answered 409: Email already registered`, true},
		{"rate limited", answer{429, []byte(`{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}`)},
			`POST http://h/auth/register answered 429: ThrottlerException: Too Many Requests (the server limits registrations and logins per client address: start it with THROTTLE=off to load it)`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := refusal(tt.a); got != tt.speaks {
				t.Errorf("refusal(%d %s) = %v, want %v", tt.a.status, tt.a.body, got, tt.speaks)
			}
			e := &targetError{method: "POST", url: "http://h/auth/register", status: tt.a.status, body: tt.a.body, foreign: !tt.speaks}
			if got := e.Error(); got != tt.want {
				t.Errorf("targetError = %s\nwant           %s", got, tt.want)
			}
		})
	}
}

func TestRefreshTokenOf(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`{"accessToken":"a","refreshToken":"r"}`: "r",
		`{"refreshToken":42}`:                    "",
		`{"accessToken":"a"}`:                    "",
		`not json`:                               "",
		`["refreshToken"]`:                       "",
	}
	for body, want := range tests {
		if got := refreshTokenOf([]byte(body)); got != want {
			t.Errorf("refreshTokenOf(%s) = %q, want %q", body, got, want)
		}
	}
}
