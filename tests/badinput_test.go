package tests

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

// maxRefusal is the most a refusal may weigh: a bad body is never answered
// at length, whatever its size.
const maxRefusal = 8 << 10

// answerDeadline is how long an attack may take to be answered: far more
// than any of them costs, far less than a hang.
const answerDeadline = 10 * time.Second

var postEndpoints = []string{"/auth/register", "/auth/login", "/auth/refresh", "/auth/logout"}

// badInput is one attack: a request sent to each of its endpoints, and the
// refusal each must answer.
type badInput struct {
	name     string
	ctype    string
	body     string
	header   []string
	method   string         // POST when empty
	paths    []string       // postEndpoints when nil
	status   int            // the answer at every endpoint...
	statusAt map[string]int // ...but these
	message  string         // a part of the message (of one of its lines, for a list)
}

func (b badInput) want(path string) int {
	if s, ok := b.statusAt[path]; ok {
		return s
	}
	return b.status
}

// TestBadInput sends every attack to every endpoint and checks the answer:
// the status, NestJS's body shape ({"statusCode","message"} with or without
// "error", keys in NestJS's order), under 8 KB, in time, and the database
// untouched: no user, no token, no rotation or revocation.
func TestBadInput(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	s := a.register(t) // a live token and a user, which no attack may touch
	email := s.User["email"].(string)

	asc, desc, shuffled := numericOrders(hostileSize)
	hostile := map[string]hostileBody{}
	for _, h := range hostileBodies() {
		hostile[h.name] = h
	}
	fromHostile := func(name string, status int, message string) badInput {
		h := hostile[name]
		if h.body == "" {
			t.Fatalf("no hostile body %q", name)
		}
		return badInput{name: name, ctype: h.ctype, body: h.body, header: encodingHeader(h.encoding), status: status, message: message}
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("email", "multipart@example.com")
	mw.WriteField("password", "password123")
	mw.WriteField("refreshToken", s.RefreshToken)
	mw.Close()
	valid := jsonText(map[string]string{"email": "new@example.com", "password": "password123", "refreshToken": s.RefreshToken})
	var deflateBomb bytes.Buffer
	zw := zlib.NewWriter(&deflateBomb)
	zw.Write(make([]byte, 10<<20))
	zw.Close()
	formKeys := make([]string, 1000)
	for i := range formKeys {
		formKeys[i] = fmt.Sprintf("k%d=1", i)
	}
	const (
		tooMany        = "too many parameters"
		tooDeep        = "Nesting deeper than 64 levels in JSON at position"
		shouldNotExist = "should not exist"
	)

	attacks := []badInput{
		// Numeric keys: the insertion sort's worst cases, past the member limit.
		{name: "numeric keys ascending", ctype: ctJSON, body: numericKeys(asc), status: 413, message: tooMany},
		{name: "numeric keys descending", ctype: ctJSON, body: numericKeys(desc), status: 413, message: tooMany},
		{name: "numeric keys shuffled", ctype: ctJSON, body: numericKeys(shuffled), status: 413, message: tooMany},
		{name: "1001 numeric keys descending", ctype: ctJSON, body: numericKeys(desc[len(desc)-1001:]), status: 413, message: tooMany},
		fromHostile("numeric keys descending, 900 per object", 400, "property o0 should not exist"),
		{name: "1000 numeric keys descending", ctype: ctJSON, body: numericKeys(desc[len(desc)-1000:]), status: 400, message: "property 0 should not exist"},
		fromHostile("999 unknown properties", 400, shouldNotExist),
		fromHostile("long unknown key", 400, "…"),
		// Nesting.
		{name: "10k [", ctype: ctJSON, body: strings.Repeat("[", 10_000), status: 400, message: tooDeep + " 64"},
		fromHostile("deep arrays", 400, tooDeep+" 64"),
		fromHostile("deep objects", 400, tooDeep+" 320"),
		{name: "65 deep under a field", ctype: ctJSON, body: `{"refreshToken":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + "}", status: 400, message: tooDeep + " 79"}, // the object is level 1,
		fromHostile("long array", 413, tooMany),
		fromHostile("array of empty objects", 413, tooMany),
		// Compressed bodies.
		fromHostile("gzip bomb", 413, "request entity too large"),
		fromHostile("empty gzip members", 413, "request entity too large"),
		{name: "deflate bomb", ctype: ctJSON, body: deflateBomb.String(), header: encodingHeader("deflate"), status: 413, message: "request entity too large"},
		// Numbers.
		{name: "1e400", ctype: ctJSON, body: `{"email":1e400,"password":-1e400,"refreshToken":1e400,"name":1e-400}`, status: 400},
		fromHostile("10k-digit integer", 400, ""),
		fromHostile("100 KB number", 400, ""),
		fromHostile("1e400", 413, tooMany),
		// Strings.
		fromHostile("ordinary long unknown string", 400, "property pad should not exist"),
		{name: "100 KB refresh token", ctype: ctJSON, body: hostile["ordinary long string"].body, paths: []string{"/auth/refresh"}, status: 401, message: "Invalid refresh token"},
		{name: "100 KB password", ctype: ctJSON, body: fill(`{"email":"`+email+`","password":"`, "x", "", `"}`, hostileSize),
			paths: []string{"/auth/register", "/auth/login"}, status: 400, statusAt: map[string]int{"/auth/login": 401}},
		onlyAt(fromHostile("escapes", 401, "Invalid refresh token"), "/auth/refresh"),
		onlyAt(fromHostile("surrogate pairs", 401, "Invalid refresh token"), "/auth/refresh"),
		// Invalid UTF-8, and text that is not UTF-8.
		{name: "invalid UTF-8 key", ctype: ctJSON, body: "{\"\xff\xfe\":\"\xc3\"}", status: 400, message: "property \ufffd\ufffd should not exist"},
		{name: "invalid UTF-8 outside strings", ctype: ctJSON, body: "{\xff}", status: 400, message: "Expected property name or '}' in JSON at position 1"},
		{name: "100 KB of invalid UTF-8", ctype: ctJSON, body: fill(`{"pad":"`, "\xff", "", `"}`, hostileSize), status: 400, message: "property pad should not exist"},
		{name: "lone surrogates", ctype: ctJSON, body: `{"\ud800":"\udfff"}`, status: 400, message: "property \ufffd should not exist"},
		fromHostile("utf-16 charset", 400, "Unexpected token"),
		{name: "charset of an unknown name", ctype: ctJSON + "; charset=" + strings.Repeat("x", 200), body: valid, status: 415, message: "unsupported charset"},
		// Duplicate keys.
		fromHostile("duplicate keys", 400, "property x should not exist"),
		{name: "duplicate token, the last a number", ctype: ctJSON, body: `{"refreshToken":"` + s.RefreshToken + `","refreshToken":1}`, paths: postEndpoints[2:], status: 400, message: "refreshToken must be a string"},
		// Prototype names: never reported, never a way to set a field.
		{name: "__proto__ with every field", ctype: ctJSON, body: `{"__proto__":` + valid + `}`, status: 400},
		{name: "constructor.prototype with every field", ctype: ctJSON, body: `{"constructor":{"prototype":` + valid + `}}`, status: 400},
		{name: "Object.prototype's names", ctype: ctJSON, body: `{"__proto__":null,"toString":1,"hasOwnProperty":"x","valueOf":[],"prototype":{}}`, status: 400},
		{name: "__proto__ in a form", ctype: ctForm, body: "__proto__[email]=x%40example.com&__proto__[password]=password123&__proto__[refreshToken]=" + s.RefreshToken, status: 400},
		// Forms.
		fromHostile("form 1000 parameters", 400, shouldNotExist),
		{name: "form 1000 distinct keys", ctype: ctForm, body: strings.Join(formKeys, "&"), status: 400, message: "property k0 should not exist"},
		{name: "form 1001 parameters", ctype: ctForm, body: strings.Join(formKeys, "&") + "&x=1", status: 413, message: tooMany},
		{name: "form 33 bracket groups", ctype: ctForm, body: "a" + strings.Repeat("[b]", 33) + "=1", status: 400, message: "The input exceeded the depth"},
		fromHostile("form brackets", 400, "property a should not exist"),
		// Too large.
		{name: "200 KB", ctype: ctJSON, body: fill(`{"pad":"`, "x", "", `"}`, 200<<10), status: 413, message: "request entity too large"},
		// The access token parser, with hostile headers.
		{name: "15 KB bearer token", method: http.MethodGet, paths: []string{"/auth/me"}, header: []string{"Authorization", "Bearer " + strings.Repeat("a.", 7000)}, status: 401, message: "Unauthorized"},
		{name: "bearer token of invalid UTF-8", method: http.MethodGet, paths: []string{"/auth/me"}, header: []string{"Authorization", "Bearer \xff.\xfe.\xfd"}, status: 401, message: "Unauthorized"},
		{name: "refresh token as a bearer token", method: http.MethodGet, paths: []string{"/auth/me"}, header: []string{"Authorization", "Bearer " + s.RefreshToken}, status: 401, message: "Unauthorized"},
	}
	// Wrong content types: the body, however valid, is not read.
	empty := map[string]string{
		"/auth/register": registerEmpty,
		"/auth/login":    `{"message":["email must be an email","password should not be empty","password must be a string"],"error":"Bad Request","statusCode":400}`,
		"/auth/refresh":  badRequest(mTokenEmpty, mTokenString),
		"/auth/logout":   badRequest(mTokenEmpty, mTokenString),
	}
	for _, ct := range []struct{ name, ctype, body string }{
		{"text/plain", "text/plain", valid},
		{"application/xml", "application/xml", `<login><email>x@example.com</email></login>`},
		{"multipart/form-data", mw.FormDataContentType(), mp.String()},
		{"no Content-Type", "", valid},
		{"application/json-patch+json", "application/json-patch+json", valid},
	} {
		attacks = append(attacks, badInput{name: "content type " + ct.name, ctype: ct.ctype, body: ct.body, status: 400, message: "must be"})
	}

	for _, b := range attacks {
		paths := b.paths
		if paths == nil {
			paths = postEndpoints
		}
		for _, path := range paths {
			t.Run(b.name+" "+path, func(t *testing.T) {
				users, tokens, active := a.rowCounts(t)
				r := a.attack(t, b, path)
				checkRefusal(t, r, b.want(path), b.message)
				if w, ok := empty[path]; ok && strings.HasPrefix(b.name, "content type ") && string(r.Body) != w {
					t.Errorf("body %s, want %s", r.Body, w)
				}
				if u, tk, ac := a.rowCounts(t); u != users || tk != tokens || ac != active {
					t.Errorf("users, tokens, active tokens: %d %d %d before, %d %d %d after", users, tokens, active, u, tk, ac)
				}
			})
		}
	}
	// The live token is still the live one: nothing rotated or revoked it.
	newToken(t, a.mustRefresh(t, s.RefreshToken))
}

// onlyAt is b sent to paths only.
func onlyAt(b badInput, paths ...string) badInput {
	b.paths = paths
	return b
}

func encodingHeader(encoding string) []string {
	if encoding == "" {
		return nil
	}
	return []string{"Content-Encoding", encoding}
}

// attack sends b to path and returns the answer, failing if none comes
// back within answerDeadline.
func (a *app) attack(t *testing.T, b badInput, path string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), answerDeadline)
	defer cancel()
	var body io.Reader
	if b.body != "" {
		body = strings.NewReader(b.body)
	}
	req, err := http.NewRequestWithContext(ctx, cmpOr(b.method, http.MethodPost), a.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if b.ctype != "" {
		req.Header.Set("Content-Type", b.ctype)
	}
	for i := 0; i+1 < len(b.header); i += 2 {
		req.Header.Set(b.header[i], b.header[i+1])
	}
	res, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("no answer within %v: %v", answerDeadline, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: out}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkRefusal checks a refusal: its status, a JSON body in one of NestJS's
// shapes whose statusCode is that status, with message (a part of its
// message, or of one line of a list), and its size.
func checkRefusal(t *testing.T, r response, status int, message string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("answer %d %.300s, want %d", r.Status, r.Body, status)
	}
	if len(r.Body) >= maxRefusal {
		t.Errorf("answer of %d bytes, want under %d", len(r.Body), maxRefusal)
	}
	if ct := r.Header.Get("Content-Type"); ct != jsonUTF8 {
		t.Errorf("Content-Type %q, want %q", ct, jsonUTF8)
	}
	keys := strings.Join(jsonKeys(t, r.Body), ",")
	switch keys {
	case "message,error,statusCode", "statusCode,message", "message,statusCode":
	default:
		t.Errorf("body keys %s, not a NestJS shape: %.300s", keys, r.Body)
	}
	var body struct {
		StatusCode int
		Message    json.RawMessage
		Error      string
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("body %.300s: %v", r.Body, err)
	}
	if body.StatusCode != status {
		t.Errorf("statusCode %d, want %d", body.StatusCode, status)
	}
	if strings.Contains(keys, "error") && body.Error != http.StatusText(status) {
		t.Errorf("error %q, want %q", body.Error, http.StatusText(status))
	}
	var text string
	if json.Unmarshal(body.Message, &text) != nil {
		var list []string
		if err := json.Unmarshal(body.Message, &list); err != nil || len(list) == 0 {
			t.Fatalf("message %s is neither a string nor a list of them", body.Message)
		}
		if len(list) > 17 {
			t.Errorf("%d messages, want 17 at most (16 and a count of the rest)", len(list))
		}
		text = strings.Join(list, "\n")
	}
	if !strings.Contains(text, message) {
		t.Errorf("message %s, want one with %q", body.Message, message)
	}
}
