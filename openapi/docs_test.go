package openapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenrelay/authsvc/openapi"
)

// TestDocsPageCSP: the page's Content-Security-Policy is the service's with
// script-src widened to exactly the page's own inline scripts, by hash.
func TestDocsPageCSP(t *testing.T) {
	t.Parallel()
	const csp = "default-src 'self';script-src 'self';style-src 'self'"
	rec := httptest.NewRecorder()
	openapi.NewDocs(csp).ServePage(rec, httptest.NewRequest(http.MethodGet, "/api", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("ServePage = %d, want 200", rec.Code)
	}
	want := []string{"'self'"}
	for _, m := range regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllSubmatch(rec.Body.Bytes(), -1) {
		sum := sha256.Sum256(m[1])
		want = append(want, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	if len(want) < 2 {
		t.Fatal("the page has no inline script; the test cannot tell a widened policy from the service's")
	}
	wantCSP := "default-src 'self';script-src " + strings.Join(want, " ") + ";style-src 'self'"
	if got := rec.Header().Get("Content-Security-Policy"); got != wantCSP {
		t.Errorf("Content-Security-Policy = %q, want %q", got, wantCSP)
	}
}

// TestDocsDocumentAndAssets: the document is served as the repository holds
// it, a file of the page is served, and any other name writes nothing and
// reports false, so the caller can answer its own 404.
func TestDocsDocumentAndAssets(t *testing.T) {
	t.Parallel()
	d := openapi.NewDocs("script-src 'self'")

	rec := httptest.NewRecorder()
	d.ServeDocument(rec, httptest.NewRequest(http.MethodGet, "/api-json", nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), openapi.JSON()) ||
		rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("ServeDocument = %d %q (%d bytes), want 200 JSON, the document", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}

	rec = httptest.NewRecorder()
	if !d.ServeAsset(rec, httptest.NewRequest(http.MethodGet, "/api/swagger-ui.css", nil), "swagger-ui.css") ||
		rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		t.Errorf("ServeAsset(swagger-ui.css) = %d with %d bytes, want the style sheet", rec.Code, rec.Body.Len())
	}
	for _, name := range []string{"index.html", "nope.js", "swagger-ui.css.gz/x", "../openapi.json", ""} {
		rec := httptest.NewRecorder()
		if d.ServeAsset(rec, httptest.NewRequest(http.MethodGet, "/api/x", nil), name) || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Errorf("ServeAsset(%q) served %d bytes, want false and nothing written", name, rec.Body.Len())
		}
	}
}
