package handlers

import (
	"io/fs"
	"net/http"
	"strconv"

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
}

func newDocs() *docs {
	return &docs{
		document: openapi.JSON(),
		ui: v5emb.NewHandlerWithConfig(swgui.Config{
			Title:       "authsvc",
			SwaggerJSON: "/api-json",
			BasePath:    "/api/",
		}),
	}
}

// json answers the document as the repository holds it.
func (d *docs) json(c echo.Context) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/json; charset=utf-8")
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(d.document)))
	c.Response().WriteHeader(http.StatusOK)
	_, err := c.Response().Write(d.document)
	return err
}

// page answers Swagger UI's HTML page.
func (d *docs) page(c echo.Context) error {
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
