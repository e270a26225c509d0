package handlers

import (
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/swaggest/swgui"
	swguistatic "github.com/swaggest/swgui/v5/static"
	"github.com/swaggest/swgui/v5emb"

	"github.com/tokenrelay/authsvc/openapi"
)

// docs serves the API's documentation where @nestjs/swagger's
// SwaggerModule.setup("api", ...) puts it: the OpenAPI document at
// GET /api-json, and Swagger UI rendering it at GET /api. The page's
// scripts, style sheet and icons are compiled into the binary and served
// under /api/: the page loads nothing from anywhere else.
type docs struct {
	document []byte
	ui       http.Handler
	pageCSP  string // the page's Content-Security-Policy: helmet's, plus its own inline scripts
}

func newDocs() *docs {
	d := &docs{
		document: openapi.JSON(),
		ui: v5emb.NewHandlerWithConfig(swgui.Config{
			Title:       "authsvc",
			SwaggerJSON: "/api-json",
			BasePath:    "/api/",
		}),
	}
	d.pageCSP = pageCSP(d.ui)
	return d
}

// inlineScript finds the scripts written into a page rather than loaded.
var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// pageCSP returns helmet's Content-Security-Policy allowing, besides the
// service's own files, exactly the inline scripts of the page ui serves
// (by their SHA-256), so that the page runs and nothing else inline does.
func pageCSP(ui http.Handler) string {
	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api", nil))
	sources := []string{"'self'"}
	for _, m := range inlineScript.FindAllSubmatch(rec.Body.Bytes(), -1) {
		sum := sha256.Sum256(m[1])
		sources = append(sources, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Replace(helmetHeaders[0][1], "script-src 'self'", "script-src "+strings.Join(sources, " "), 1)
}

// json answers the document as the repository holds it.
func (d *docs) json(c echo.Context) error {
	return writeJSONBytes(c, http.StatusOK, d.document)
}

// page answers Swagger UI's HTML page.
func (d *docs) page(c echo.Context) error {
	c.Response().Header().Set("Content-Security-Policy", d.pageCSP)
	d.ui.ServeHTTP(c.Response(), c.Request())
	return nil
}

// asset answers one of the page's files, and Express's 404 for any other
// name.
func (d *docs) asset(c echo.Context) error {
	name := c.Param("asset")
	if !fs.ValidPath(name) || !(exists(name) || exists(name+".gz")) {
		return notFound(c)
	}
	d.ui.ServeHTTP(c.Response(), c.Request())
	return nil
}

// exists reports whether Swagger UI's embedded assets have a file of this
// name (most are stored gzipped, and served inflated to a client that
// does not take gzip).
func exists(name string) bool {
	info, err := fs.Stat(swguistatic.FS, name)
	return err == nil && !info.IsDir()
}
