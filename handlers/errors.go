package handlers

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/bodyparser"
	"github.com/tokenrelay/authsvc/classvalidator"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

// httpError is an error whose message the client may see, in one of the
// body shapes of NestJS.
type httpError struct {
	status  int
	message any // a string, or the list of validation failures
	shape   bodyShape
}

type bodyShape int

const (
	// nestShape is HttpException's: {"message", "error", "statusCode"}.
	nestShape bodyShape = iota
	// bareShape is the shape of an exception built without a message, like
	// passport's 401: {"message", "statusCode"}.
	bareShape
	// parserShape is how Nest answers an Express body-parser error:
	// {"statusCode", "message"}.
	parserShape
)

func (e *httpError) Error() string {
	if s, ok := e.message.(string); ok {
		return s
	}
	return http.StatusText(e.status)
}

func newHTTPError(status int, message any) *httpError {
	return &httpError{status: status, message: message}
}

var errUnauthorized = &httpError{status: http.StatusUnauthorized, message: "Unauthorized", shape: bareShape}

// The bodies, with their keys in NestJS's order.
type (
	nestBody struct {
		Message    any    `json:"message"`
		Error      string `json:"error"`
		StatusCode int    `json:"statusCode"`
	}
	bareBody struct {
		Message    any `json:"message"`
		StatusCode int `json:"statusCode"`
	}
	parserBody struct {
		StatusCode int `json:"statusCode"`
		Message    any `json:"message"`
	}
)

// retryAfter is the Retry-After, in seconds, of a 503: a busy lock, a full
// password-hashing queue, or a database that did not answer.
const retryAfter = 1

// toHTTP maps an error to what the client sees: the errors of the body's
// reading and validation as NestJS answers them, domain errors one answer
// each; anything else is a 500 that tells nothing.
func toHTTP(err error) *httpError {
	var (
		he  *httpError
		ee  *echo.HTTPError
		bpe *bodyparser.Error
		se  *bodyparser.SyntaxError
		ve  *classvalidator.ValidationError
	)
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &bpe): // Nest passes body-parser's error on as it is
		return &httpError{status: bpe.Status, message: bpe.Message, shape: parserShape}
	case errors.As(err, &se): // a BadRequestException with JSON.parse's message
		return newHTTPError(http.StatusBadRequest, se.Message)
	case errors.As(err, &ve): // ValidationPipe's BadRequestException
		return newHTTPError(http.StatusBadRequest, ve.Messages)
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrTokenReused):
		return newHTTPError(http.StatusUnauthorized, "Invalid refresh token")
	case errors.Is(err, auth.ErrInvalidCredentials):
		return newHTTPError(http.StatusUnauthorized, "Invalid credentials")
	case errors.Is(err, auth.ErrUnauthorized):
		return errUnauthorized
	case errors.Is(err, auth.ErrEmailTaken):
		return newHTTPError(http.StatusConflict, "Email already registered")
	case errors.Is(err, mutex.ErrLockTimeout):
		return newHTTPError(http.StatusServiceUnavailable, "Too many concurrent refreshes of this token, retry shortly")
	case errors.Is(err, mutex.ErrUnavailable):
		return newHTTPError(http.StatusServiceUnavailable, "Lock service unavailable, retry shortly")
	case errors.Is(err, models.ErrUnavailable):
		return newHTTPError(http.StatusServiceUnavailable, "Database unavailable, retry shortly")
	case errors.Is(err, auth.ErrBusy):
		return newHTTPError(http.StatusServiceUnavailable, "Too many logins in progress, retry shortly")
	case errors.As(err, &ee) && ee.Code == http.StatusRequestEntityTooLarge:
		return toHTTP(bodyparser.ErrTooLarge)
	}
	return errInternal
}

var errInternal = &httpError{status: http.StatusInternalServerError, message: "Internal server error", shape: parserShape}

// errorHandler is the server's echo.HTTPErrorHandler: it logs what the client
// must not see, once, and writes the NestJS body.
func (s *server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	he := toHTTP(err)
	if ee := (*echo.HTTPError)(nil); errors.As(err, &ee) && (ee.Code == http.StatusNotFound || ee.Code == http.StatusMethodNotAllowed) {
		he = notFound(c) // echo's own "no route": Express answers 404 for both
	}
	ctx := c.Request().Context()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return // the client left; nobody reads the answer (observe logs a 499)
	}
	if he.status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	// The request line that observe writes carries the error of a 5xx.
	var body any
	switch he.shape {
	case nestShape:
		body = nestBody{Message: he.message, Error: http.StatusText(he.status), StatusCode: he.status}
	case bareShape:
		body = bareBody{Message: he.message, StatusCode: he.status}
	default:
		body = parserBody{StatusCode: he.status, Message: he.message}
	}
	if err := writeJSON(c, he.status, body); err != nil {
		s.log.DebugContext(ctx, "write error response", "error", err.Error())
	}
}

// notFound is Express's answer to a route it does not have, method and
// target exactly as sent.
func notFound(c echo.Context) *httpError {
	r := c.Request()
	return newHTTPError(http.StatusNotFound, "Cannot "+r.Method+" "+r.RequestURI)
}
