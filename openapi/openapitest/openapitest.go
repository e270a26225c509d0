// Package openapitest holds HTTP answers of the service to its OpenAPI
// document: the route of each request must be in it, the status documented
// for that route, the headers and the body as the document describes them.
// Tests use it; the service does not.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks answers against one OpenAPI document. It is safe for
// concurrent use.
type Validator struct {
	doc      *openapi3.T
	router   routers.Router
	unrouted *openapi3.Operation
}

// New loads and validates document, an OpenAPI 3 document in JSON or YAML.
func New(ctx context.Context, document []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("load the document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("the document is not valid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the document: %w", err)
	}
	// A method or path the document does not have is answered with these
	// components: a body is read before routing, so its errors come
	// first, then Express's 404.
	op := &openapi3.Operation{Responses: openapi3.NewResponses()}
	op.Responses.Delete("default")
	for status, name := range map[int]string{
		http.StatusBadRequest:            "MalformedBody",
		http.StatusNotFound:              "NotFound",
		http.StatusRequestEntityTooLarge: "PayloadTooLarge",
		http.StatusUnsupportedMediaType:  "UnsupportedMediaType",
		http.StatusInternalServerError:   "InternalServerError",
	} {
		r := doc.Components.Responses[name]
		if r == nil {
			return nil, fmt.Errorf("the document has no components.responses.%s", name)
		}
		op.Responses.Set(fmt.Sprint(status), r)
	}
	return &Validator{doc: doc, router: router, unrouted: op}, nil
}

// Operations lists the document's operations as "METHOD /path", sorted.
func (v *Validator) Operations() []string {
	var ops []string
	for path, item := range v.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// Check checks one answer to req: its status, headers and body. req's body
// is not read. A HEAD request is checked as the GET it mirrors, its body
// empty.
//
// A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
// is the CORS middleware's, not an operation of the API, and is not checked.
func (v *Validator) Check(ctx context.Context, req *http.Request, status int, header http.Header, body []byte) error {
	if req.Method == http.MethodOptions && req.Header.Get("Origin") != "" && req.Header.Get("Access-Control-Request-Method") != "" && status == http.StatusNoContent {
		return nil
	}
	probe, err := routable(req)
	if err != nil {
		return err
	}
	route, params, err := v.router.FindRoute(probe)
	switch {
	case errors.Is(err, routers.ErrPathNotFound), errors.Is(err, routers.ErrMethodNotAllowed):
		route = &routers.Route{Spec: v.doc, Method: probe.Method, Operation: v.unrouted}
	case err != nil:
		return fmt.Errorf("find the route: %w", err)
	}
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		return fmt.Errorf("status %d is not documented for %s", status, describe(route))
	}
	if req.Method == http.MethodHead || len(ref.Value.Content) == 0 {
		// kin-openapi checks neither a HEAD answer nor a body the document
		// does not describe.
		if len(body) != 0 {
			return fmt.Errorf("%s %d has a body (%.100q), want none", describe(route), status, body)
		}
		if req.Method == http.MethodHead {
			return nil
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		return fmt.Errorf("%s %d: %w", describe(route), status, err)
	}
	return nil
}

func describe(route *routers.Route) string {
	if route.Path == "" {
		return "a route the document does not have (" + route.Method + ")"
	}
	return route.Method + " " + route.Path
}

// routable is req as the document's router should see it: the path matched
// as Express matches it (any case, one trailing slash and a fragment
// ignored), and HEAD as GET.
func routable(req *http.Request) (*http.Request, error) {
	u := *req.URL
	u.Scheme, u.Host, u.User = "", "", nil
	u.Path = expressPath(u.Path)
	u.RawPath = expressPath(u.RawPath)
	method := req.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	probe, err := http.NewRequestWithContext(req.Context(), method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("the request's URL %q: %w", req.URL, err)
	}
	probe.Header = req.Header.Clone()
	return probe, nil
}

func expressPath(p string) string {
	p, _, _ = strings.Cut(p, "#")
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	return strings.ToLower(p)
}

// Transport is an http.RoundTripper that checks every answer it carries
// with Validator and records what does not match; the answers themselves
// reach the client unchanged.
type Transport struct {
	Base      http.RoundTripper // http.DefaultTransport when nil
	Validator *Validator

	mu       sync.Mutex
	checked  int
	failures []string
}

// RoundTrip sends req, reads the answer whole and checks it.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	res, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		// An answer cut short is the client's to see, not a contract matter.
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errorReader{err}))
		return res, nil
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	verr := t.Validator.Check(req.Context(), req, res.StatusCode, res.Header, body)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checked++
	if verr != nil {
		t.failures = append(t.failures, fmt.Sprintf("%s %s → %d %.300s\n%v", req.Method, target(req.URL), res.StatusCode, body, verr))
	}
	return res, nil
}

// Checked is how many answers were checked.
func (t *Transport) Checked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checked
}

// Failures describes each answer that did not match the document.
func (t *Transport) Failures() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.failures)
}

func target(u *url.URL) string {
	return u.RequestURI()
}

type errorReader struct{ err error }

func (r errorReader) Read([]byte) (int, error) { return 0, r.err }
