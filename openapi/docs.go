package openapi

import (
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"

	"github.com/swaggest/swgui"
	swguistatic "github.com/swaggest/swgui/v5/static"
	"github.com/swaggest/swgui/v5emb"
)

// Docs serves the document and Swagger UI rendering it where
// @nestjs/swagger's SwaggerModule.setup("api", ...) puts them: the document
// at GET /api-json, the page at GET /api, and the page's scripts, style
// sheet and icons, compiled into the binary, under /api/. The page loads
// nothing from anywhere else. A Docs is safe for concurrent use.
type Docs struct {
	document []byte
	ui       http.Handler
	pageCSP  string // the page's Content-Security-Policy: the service's, plus the page's inline scripts
}

// NewDocs returns the documentation of a service whose answers carry the
// Content-Security-Policy csp. The page's policy is csp with script-src
// also allowing, by their SHA-256, exactly the page's own inline scripts:
// the page runs, and nothing else inline does.
func NewDocs(csp string) *Docs {
	d := &Docs{
		document: JSON(),
		ui: v5emb.NewHandlerWithConfig(swgui.Config{
			Title:       "authsvc",
			SwaggerJSON: "/api-json",
			BasePath:    "/api/",
		}),
	}
	d.pageCSP = pageCSP(d.ui, csp)
	return d
}

// inlineScript finds the scripts written into a page rather than loaded.
var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// pageCSP returns csp with script-src 'self' widened to the inline scripts
// of the page ui serves.
func pageCSP(ui http.Handler, csp string) string {
	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api", nil))
	sources := []string{"'self'"}
	for _, m := range inlineScript.FindAllSubmatch(rec.Body.Bytes(), -1) {
		sum := sha256.Sum256(m[1])
		sources = append(sources, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Replace(csp, "script-src 'self'", "script-src "+strings.Join(sources, " "), 1)
}

// ServeDocument answers GET /api-json: the document as the repository
// holds it, as Express's res.json would send it.
func (d *Docs) ServeDocument(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(d.document)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d.document) // an error means the client left: nothing more to say to it
}

// ServePage answers GET /api: Swagger UI's HTML page, with its
// Content-Security-Policy.
func (d *Docs) ServePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", d.pageCSP)
	d.ui.ServeHTTP(w, r)
}

// ServeAsset answers GET /api/name with one of the page's files and
// reports true. For any other name it writes nothing and reports false,
// leaving the caller to answer its own 404.
func (d *Docs) ServeAsset(w http.ResponseWriter, r *http.Request, name string) bool {
	if !fs.ValidPath(name) || !(exists(name) || exists(name+".gz")) {
		return false
	}
	d.ui.ServeHTTP(w, r)
	return true
}

// exists reports whether Swagger UI's embedded assets have a file of this
// name (most are stored gzipped, and served inflated to a client that
// does not take gzip).
func exists(name string) bool {
	info, err := fs.Stat(swguistatic.FS, name)
	return err == nil && !info.IsDir()
}
