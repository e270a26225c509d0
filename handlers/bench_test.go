package handlers

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenrelay/authsvc/bodyparser"
)

// refreshBody is a refresh request's body as clients send it: the token is
// 32 random bytes in base64url, as package auth issues them.
const refreshBody = `{"refreshToken":"q1VbXh0yJ3n6c9kq0yQy5Qm2C1rR8d7wq8m4L0bq5sE"}`

// rereadable is a request body that can be read again after Reset, so that
// the benchmark's loop measures the body path, not building requests.
type rereadable struct{ strings.Reader }

func (*rereadable) Close() error { return nil }

// BenchmarkReadRefreshBody measures the body path of POST /auth/refresh
// without the network: reading and parsing the body, validating it against
// the refresh DTO and taking the token out.
func BenchmarkReadRefreshBody(b *testing.B) {
	body := &rereadable{}
	req := httptest.NewRequest(http.MethodPost, "/auth/refresh", nil)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(refreshBody))
	req.Body = body
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(refreshBody)
		obj, err := bodyparser.Read(req)
		if err != nil {
			b.Fatal(err)
		}
		in, err := refreshTokenDTO.Validate(obj)
		if err != nil {
			b.Fatal(err)
		}
		if in.RefreshToken == "" {
			b.Fatal("no token")
		}
	}
}
