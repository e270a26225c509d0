package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenrelay/authsvc/bodyparser"
	"github.com/tokenrelay/authsvc/classvalidator"
)

// FuzzInput reads any JSON or urlencoded body and validates it against
// each DTO of the API: it never panics; a refusal is a 400 with at most
// classvalidator.MaxMessages+1 messages that weighs 8 KB at most as
// written; and an accepted body fills the input with the body's own
// strings.
func FuzzInput(f *testing.F) {
	for _, seed := range []struct{ ctype, body string }{
		{"application/json", `{"refreshToken":"x"}`},
		{"application/json", `{"email":"a@b.co","password":"12345678","name":"Ann"}`},
		{"application/json", `{"email":"a@b.co","password":"x","name":null}`},
		{"application/json", `{"email":1,"password":[],"k":{}}`},
		{"application/json", `{"` + strings.Repeat("k", 200) + `":1}`},
		{"application/x-www-form-urlencoded", "email=a%40b.co&password=x&x[y]=1"},
		{"application/x-www-form-urlencoded", strings.Repeat("a=1&", 20) + "refreshToken=x"},
	} {
		f.Add(seed.ctype, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/auth/refresh", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		obj, err := bodyparser.Read(req)
		if err != nil {
			return // bodyparser's FuzzReadBody checks refusals of the body itself
		}
		str := func(key string) string { s, _ := stringAt(obj, key); return s }
		register, err := registerDTO.Validate(obj)
		checkValidation(t, err)
		name, named := stringAt(obj, "name")
		if err == nil && (register.Email != str("email") || register.Password != str("password") ||
			(register.Name != nil) != named || named && *register.Name != name) {
			t.Fatalf("register input %+v from %q", register, body)
		}
		login, err := loginDTO.Validate(obj)
		checkValidation(t, err)
		if err == nil && (login.Email != str("email") || login.Password != str("password")) {
			t.Fatalf("login input %+v from %q", login, body)
		}
		refresh, err := refreshTokenDTO.Validate(obj)
		checkValidation(t, err)
		if err == nil && refresh.RefreshToken != str("refreshToken") {
			t.Fatalf("refresh input %+v from %q", refresh, body)
		}
	})
}

// stringAt is the string value of key, and whether there is one.
func stringAt(obj *bodyparser.Object, key string) (string, bool) {
	v, _ := obj.Get(key)
	s, ok := v.(string)
	return s, ok
}

// maxErrorBody is the most a refusal of a body may weigh, as written.
const maxErrorBody = 8 << 10

// checkValidation checks a validation's refusal, if err is one, as the
// server writes it.
func checkValidation(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ve *classvalidator.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *classvalidator.ValidationError", err)
	}
	if len(ve.Messages) > classvalidator.MaxMessages+1 {
		t.Fatalf("Validate gave %d messages", len(ve.Messages))
	}
	he := toHTTP(err)
	b, err := json.Marshal(nestBody{Message: he.message, Error: http.StatusText(he.status), StatusCode: he.status})
	if err != nil {
		t.Fatalf("marshal %#v: %v", he.message, err)
	}
	if he.status != http.StatusBadRequest || len(b) > maxErrorBody {
		t.Fatalf("answer %d of %d bytes: %.200s...", he.status, len(b), b)
	}
}

// jsSpace is JavaScript's \s, as a regexp class body.
const jsSpace = `\t\n\v\f\r \x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}`

// passportBearer is passport-jwt's /(\S+)\s+(\S+)/, with JavaScript's \s.
var passportBearer = regexp.MustCompile(`([^` + jsSpace + `]+)[` + jsSpace + `]+([^` + jsSpace + `]+)`)

// FuzzBearerToken checks the Authorization parser against passport-jwt's
// regular expression: the first match's first word is the scheme ("bearer"
// in any case) and its second the token.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []string{
		"Bearer abc", "bearer abc", "BEARER\tabc", "  Bearer   abc  trailing", "Bearer", "Bearer ", "Basic abc", "abc", "",
		"Bearer\u00a0abc", "Bearer\u0085abc", "Bearer\ufeffabc", "Bearer\u2028abc", "Token Bearer abc", "Bearer \xff\xfe",
		"Bearer\u3000a.b.c", "bEaReR x y z",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearerToken(header)
		want, wantOK := "", false
		if m := passportBearer.FindStringSubmatch(header); m != nil && strings.ToLower(m[1]) == "bearer" {
			want, wantOK = m[2], true
		}
		if token != want || ok != wantOK {
			t.Fatalf("bearerToken(%q) = %q, %v; passport-jwt reads %q, %v", header, token, ok, want, wantOK)
		}
		if ok && (token == "" || strings.IndexFunc(token, isJSSpace) >= 0 || !strings.Contains(header, token)) {
			t.Fatalf("bearerToken(%q) = %q", header, token)
		}
	})
}
