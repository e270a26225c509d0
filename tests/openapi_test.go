package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokenrelay/authsvc/openapi"
	"github.com/tokenrelay/authsvc/openapi/openapitest"
)

// The OpenAPI document is held to the service by every test of this
// package: the client of each app checks each answer it gets against the
// document (route, status, headers, body) and the test fails on any that
// does not match. The tests below check the documentation routes, that the
// document names every route, and that the check does catch a drift.

// contractValidator is the document's validator, loaded once for the
// package's tests: loading and validating the document takes tens of
// milliseconds, and the validator is safe for concurrent use.
var contractValidator = sync.OnceValues(func() (*openapitest.Validator, error) {
	return openapitest.New(context.Background(), openapi.JSON())
})

// contractClient returns an app's HTTP client, whose answers are checked
// against the OpenAPI document; what does not match fails t when it ends.
// Benchmarks get a plain client: the check would be part of what they time.
func contractClient(t testing.TB) (*http.Client, *openapitest.Transport) {
	t.Helper()
	base := &http.Transport{MaxIdleConnsPerHost: 1000}
	if _, ok := t.(*testing.B); ok {
		return &http.Client{Transport: base, Timeout: 30 * time.Second}, nil
	}
	v, err := contractValidator()
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	tr := &openapitest.Transport{Base: base, Validator: v}
	t.Cleanup(func() {
		const most = 20
		failures := tr.Failures()
		for i, f := range failures {
			if i == most {
				t.Errorf("OpenAPI: and %d more answers that do not match the document", len(failures)-most)
				break
			}
			t.Errorf("OpenAPI: an answer does not match the document (openapi/openapi.json):\n%s", f)
		}
	})
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr
}

// TestOpenAPIDocumentServed: GET /api-json answers the document of the
// repository, byte for byte, as JSON.
func TestOpenAPIDocumentServed(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	for _, path := range []string{"/api-json", "/API-JSON/", "/api-json?x=1"} {
		r, err := a.do(http.MethodGet, path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusOK || !bytes.Equal(r.Body, openapi.JSON()) {
			t.Errorf("GET %s = %d (%d bytes), want 200 and openapi/openapi.json (%d bytes)", path, r.Status, len(r.Body), len(openapi.JSON()))
		}
		if ct := r.Header.Get("Content-Type"); ct != jsonUTF8 {
			t.Errorf("GET %s: Content-Type %q, want %q", path, ct, jsonUTF8)
		}
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(openapi.JSON(), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi/openapi.json: openapi %q (%v), want 3.1.x", doc.OpenAPI, err)
	}
	a.expect(t, contractCase{method: http.MethodPost, path: "/api-json", status: 404, want: notFound("POST /api-json")})
}

var (
	// pageRefRE finds what an HTML page makes the browser load.
	pageRefRE = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*["']([^"']+)["']`)
	// pageSpecRE finds the document Swagger UI's page renders.
	pageSpecRE = regexp.MustCompile(`"swaggerJsonUrl"\s*:\s*"([^"]+)"`)
	// externalRE finds an absolute URL with a host; a bare "https://" in a
	// script's string is none.
	externalRE = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9][a-z0-9.-]*[a-z0-9](?::\d+)?[/"'\s)]`)
	cssURLRE   = regexp.MustCompile(`(?i)url\(\s*["']?([^"')]+)`)
)

// TestOpenAPIPage: GET /api is an HTML page rendered from the document,
// and everything it loads is served by the service itself: no CDN, no
// other host.
func TestOpenAPIPage(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	page, err := a.do(http.MethodGet, "/api", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /api = %d %s, want 200 text/html", page.Status, page.Header.Get("Content-Type"))
	}
	html := string(page.Body)
	if m := externalRE.FindAllString(html, -1); m != nil {
		t.Errorf("the page names other hosts: %q", m)
	}

	spec := pageSpecRE.FindStringSubmatch(html)
	if spec == nil || spec[1] != "/api-json" {
		t.Errorf("the page renders %q, want /api-json", spec)
	}
	var refs []string
	for _, m := range pageRefRE.FindAllStringSubmatch(html, -1) {
		refs = append(refs, m[1])
	}
	var scripts, styles int
	for _, ref := range refs {
		if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
			t.Errorf("the page loads %q, want a path of this server", ref)
			continue
		}
		r, err := a.do(http.MethodGet, ref, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusOK || len(r.Body) == 0 {
			t.Errorf("GET %s (loaded by the page) = %d with %d bytes, want 200 with the file", ref, r.Status, len(r.Body))
			continue
		}
		ct := r.Header.Get("Content-Type")
		switch {
		case strings.HasSuffix(ref, ".js"):
			scripts++
			if !strings.Contains(ct, "javascript") {
				t.Errorf("GET %s: Content-Type %q, want JavaScript", ref, ct)
			}
		case strings.HasSuffix(ref, ".css"):
			styles++
			for _, u := range cssURLRE.FindAllStringSubmatch(string(r.Body), -1) {
				if !strings.HasPrefix(u[1], "data:") {
					t.Errorf("%s loads %q, want only data: URLs", ref, u[1])
				}
			}
		}
	}
	if scripts < 2 || styles < 1 {
		t.Errorf("the page loads %d scripts and %d style sheets from here (%q), want Swagger UI's bundle, preset and style sheet", scripts, styles, refs)
	}

	// The page's own route answers nothing else.
	for _, ref := range []string{"/api/index.html", "/api/nope.js", "/api/swagger-ui.css.gz/x", "/api/..%2Fapi-json"} {
		a.expect(t, contractCase{method: http.MethodGet, path: ref, status: 404, want: notFound("GET " + ref)})
	}
}

// TestOpenAPICoversEveryRoute: the document has an operation for each
// route of the server, and none the server does not have.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	e, ok := a.Server.Config.Handler.(*echo.Echo)
	if !ok {
		t.Fatalf("the server's handler is a %T, want *echo.Echo", a.Server.Config.Handler)
	}
	param := regexp.MustCompile(`:(\w+)`)
	served := map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == http.MethodHead || r.Method == echo.RouteNotFound {
			continue // HEAD mirrors GET
		}
		served[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	v, err := contractValidator()
	if err != nil {
		t.Fatal(err)
	}
	documented := v.Operations()
	if got := slices.Sorted(maps.Keys(served)); !slices.Equal(got, documented) {
		t.Errorf("the server's routes\n%q\nare not the document's operations\n%q", got, documented)
	}
}

// TestOpenAPICheckCatchesDrift takes real answers of the service, changes
// them the way a drift would, and expects the check to refuse each change,
// and to pass the answers as they are.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	t.Parallel()
	a := newApp(t, defaultConfig())
	v, err := contractValidator()
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string, header ...string) (*http.Request, response) {
		t.Helper()
		var r response
		if body == "" {
			r, err = a.do(method, path, "", nil, header...)
		} else {
			r, err = a.do(method, path, ctJSON, strings.NewReader(body), header...)
		}
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(method, a.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return req, r
	}
	reg := `{"email":"drift@example.com","password":"password123","name":"Drift"}`
	regReq, registered := send(http.MethodPost, "/auth/register", reg)
	loginReq, badLogin := send(http.MethodPost, "/auth/login", `{"email":"drift@example.com","password":"wrong-password"}`)
	invalidReq, invalid := send(http.MethodPost, "/auth/refresh", `{"foo":1}`)
	var s struct{ AccessToken, RefreshToken string }
	if err := json.Unmarshal(registered.Body, &s); err != nil {
		t.Fatalf("register: %s", registered)
	}
	meReq, me := send(http.MethodGet, "/auth/me", "", "Authorization", "Bearer "+s.AccessToken)
	headReq, head := send(http.MethodHead, "/auth/me", "", "Authorization", "Bearer "+s.AccessToken)
	logoutReq, logout := send(http.MethodPost, "/auth/logout", `{"refreshToken":"`+s.RefreshToken+`"}`)
	nopeReq, nope := send(http.MethodGet, "/nope", "")
	healthReq, health := send(http.MethodGet, "/health", "")

	// edit returns r's JSON body changed by fn.
	edit := func(r response, fn func(m map[string]any)) []byte {
		t.Helper()
		m := r.json(t)
		fn(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	user := func(fn func(u map[string]any)) func(map[string]any) {
		return func(m map[string]any) { fn(m["user"].(map[string]any)) }
	}
	without := func(h http.Header, name string) http.Header {
		h = h.Clone()
		h.Del(name)
		return h
	}
	with := func(h http.Header, name, value string) http.Header {
		h = h.Clone()
		h.Set(name, value)
		return h
	}
	for _, c := range []struct {
		name   string
		req    *http.Request
		status int
		header http.Header
		body   []byte
		ok     bool
	}{
		{"register as answered", regReq, registered.Status, registered.Header, registered.Body, true},
		{"bad login as answered", loginReq, badLogin.Status, badLogin.Header, badLogin.Body, true},
		{"validation failure as answered", invalidReq, invalid.Status, invalid.Header, invalid.Body, true},
		{"me as answered", meReq, me.Status, me.Header, me.Body, true},
		{"HEAD me as answered", headReq, head.Status, head.Header, head.Body, true},
		{"logout as answered", logoutReq, logout.Status, logout.Header, logout.Body, true},
		{"404 as answered", nopeReq, nope.Status, nope.Header, nope.Body, true},
		{"health as answered", healthReq, health.Status, health.Header, health.Body, true},

		{"user without createdAt", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { delete(u, "createdAt") })), false},
		{"user with a password hash", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { u["passwordHash"] = "$2a$10$x" })), false},
		{"name a number", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { u["name"] = 5 })), false},
		{"name null", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { u["name"] = nil })), true},
		{"createdAt without milliseconds", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { u["createdAt"] = "2026-01-02T03:04:05Z" })), false},
		{"id not a UUID", regReq, 201, registered.Header, edit(registered, user(func(u map[string]any) { u["id"] = "42" })), false},
		{"refresh token short", regReq, 201, registered.Header, edit(registered, func(m map[string]any) { m["refreshToken"] = "abc" }), false},
		{"session without refreshToken", regReq, 201, registered.Header, edit(registered, func(m map[string]any) { delete(m, "refreshToken") }), false},
		{"register answered 200", regReq, 200, registered.Header, registered.Body, false},
		{"an undocumented status", regReq, http.StatusTeapot, registered.Header, registered.Body, false},
		{"token answer without Cache-Control", regReq, 201, without(registered.Header, "Cache-Control"), registered.Body, false},
		{"token answer cacheable", meReq, 200, with(me.Header, "Cache-Control", "max-age=60"), me.Body, false},
		{"no X-Request-Id", loginReq, 401, without(badLogin.Header, "X-Request-Id"), badLogin.Body, false},
		{"login 401 in passport's bare shape", loginReq, 401, badLogin.Header, []byte(bodyUnauthorized), false},
		{"login 401 with another message", loginReq, 401, badLogin.Header, edit(badLogin, func(m map[string]any) { m["message"] = "Wrong password" }), false},
		{"me 401 in NestJS's shape", meReq, 401, me.Header, []byte(bodyBadCredentials), false},
		{"validation failure without messages", invalidReq, 400, invalid.Header, edit(invalid, func(m map[string]any) { m["message"] = []any{} }), false},
		{"validation failure as text", invalidReq, 400, with(invalid.Header, "Content-Type", "text/plain"), invalid.Body, false},
		{"503 without Retry-After", invalidReq, 503, invalid.Header, []byte(`{"message":"Database unavailable, retry shortly","error":"Service Unavailable","statusCode":503}`), false},
		{"503 with Retry-After", invalidReq, 503, with(invalid.Header, "Retry-After", "1"), []byte(`{"message":"Database unavailable, retry shortly","error":"Service Unavailable","statusCode":503}`), true},
		{"429 with Retry-After", loginReq, 429, with(badLogin.Header, "Retry-After", "30"), []byte(`{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}`), true},
		{"429 on refresh", invalidReq, 429, with(invalid.Header, "Retry-After", "30"), []byte(`{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}`), false},
		{"logout with a body", logoutReq, 204, logout.Header, []byte(`{}`), false},
		{"HEAD with a body", headReq, 200, head.Header, me.Body, false},
		{"404 with another statusCode", nopeReq, 404, nope.Header, edit(nope, func(m map[string]any) { m["statusCode"] = 400 }), false},
		{"unknown route answered 200", nopeReq, 200, nope.Header, []byte(`{}`), false},
		{"health with an unknown indicator", healthReq, 200, health.Header, edit(health, func(m map[string]any) { m["info"] = map[string]any{"disk": map[string]any{"status": "up"}} }), false},
		{"health status 'up'", healthReq, 200, health.Header, edit(health, func(m map[string]any) { m["status"] = "up" }), false},
	} {
		err := v.Check(t.Context(), c.req, c.status, c.header, c.body)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.ok && err == nil:
			t.Errorf("%s: the check passed %d %s", c.name, c.status, c.body)
		}
	}
	if n := a.contract.Checked(); n < 8 {
		t.Errorf("the app's client checked %d answers, want the 8 it got", n)
	}
}

// TestOpenAPICheckTransport: the checking transport hands the answer on
// unchanged, and records one the document does not allow.
func TestOpenAPICheckTransport(t *testing.T) {
	t.Parallel()
	v, err := contractValidator()
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "x")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"fine"}`)
	}))
	tr := &openapitest.Transport{Validator: v}
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(res.Body)
	res.Body.Close()
	if body.String() != `{"status":"fine"}` {
		t.Errorf("the client read %q through the transport, want the answer as sent", body.String())
	}
	if f := tr.Failures(); tr.Checked() != 1 || len(f) != 1 || !strings.Contains(f[0], "GET /health") {
		t.Errorf("checked %d, failures %q; want the one answer refused", tr.Checked(), f)
	}
}
