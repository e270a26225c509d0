package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/bodyparser"
	"github.com/tokenrelay/authsvc/classvalidator"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

func TestToHTTP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		msg    any
	}{
		{"invalid refresh token", fmt.Errorf("refresh: %w", auth.ErrInvalidToken), 401, "Invalid refresh token"},
		{"reused refresh token", auth.ErrTokenReused, 401, "Invalid refresh token"},
		{"bad credentials", auth.ErrInvalidCredentials, 401, "Invalid credentials"},
		{"bad access token", auth.ErrUnauthorized, 401, "Unauthorized"},
		{"email taken", auth.ErrEmailTaken, 409, "Email already registered"},
		{"lock timeout", fmt.Errorf("%w: %w", mutex.ErrLockTimeout, context.DeadlineExceeded), 503, "Too many concurrent refreshes of this token, retry shortly"},
		{"lock service down", mutex.ErrUnavailable, 503, "Lock service unavailable, retry shortly"},
		{"database down", fmt.Errorf("find user: %w after 12 attempts: %w", models.ErrUnavailable, io.ErrUnexpectedEOF), 503, "Database unavailable, retry shortly"},
		{"anything else", errors.New("sqlite: disk I/O error at /var/lib/x"), 500, "Internal server error"},
		{"body too large", bodyparser.ErrTooLarge, 413, "request entity too large"},
		{"body not JSON", &bodyparser.SyntaxError{Message: bodyparser.JSString{'x'}}, 400, "x"},
		{"body not valid", &classvalidator.ValidationError{Messages: []string{"a", "b"}}, 400, "[a b]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			he := toHTTP(tc.err)
			if he.status != tc.status || fmt.Sprint(he.message) != fmt.Sprint(tc.msg) {
				t.Errorf("toHTTP(%v) = %d %v, want %d %v", tc.err, he.status, he.message, tc.status, tc.msg)
			}
		})
	}
}

// TestRefreshHandlerRejectsBadInput calls the handler alone: bad input
// returns a 400 before the auth service is reached (it is nil here).
func TestRefreshHandlerRejectsBadInput(t *testing.T) {
	s := &server{}
	e := echo.New()
	for _, body := range []string{`{}`, `{"refreshToken":""}`, `{"refreshToken":1}`, `{"refreshToken":"x","foo":1}`} {
		req := httptest.NewRequest(http.MethodPost, "/auth/refresh", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var err error
		read := parseBody(func(c echo.Context) error { err = s.refresh(c); return nil })
		if err := read(e.NewContext(req, httptest.NewRecorder())); err != nil {
			t.Fatalf("parseBody(%s) = %v", body, err)
		}
		if err == nil || toHTTP(err).status != http.StatusBadRequest {
			t.Errorf("refresh(%s) = %v, want a 400", body, err)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER\tabc", "abc", true},
		{"  Bearer   abc  trailing", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		if token, ok := bearerToken(tc.header); token != tc.token || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.header, token, ok, tc.token, tc.ok)
		}
	}
}
