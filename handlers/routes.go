package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenrelay/authsvc/openapi"
)

// routes installs every route of the API, docs serving the documentation.
// GET routes answer HEAD too, as Express's do; any other method or path is
// Express's 404.
func (s *server) routes(e *echo.Echo, docs *openapi.Docs) {
	get := []string{http.MethodGet, http.MethodHead}
	for _, r := range []*echo.Route{
		e.POST("/auth/register", s.register, s.throttle.byIP("register")),
		e.POST("/auth/login", s.login, s.throttle.byIP("login")),
		e.POST("/auth/refresh", s.refresh),
		e.POST("/auth/logout", s.logout),
		e.Match(get, "/auth/me", s.me)[0],
		e.Match(get, "/health", s.health)[0],
		e.Match(get, "/metrics", echo.WrapHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))[0],
		e.Match(get, "/api-json", echo.WrapHandler(http.HandlerFunc(docs.ServeDocument)))[0],
		e.Match(get, "/api", echo.WrapHandler(http.HandlerFunc(docs.ServePage)))[0],
		e.Match(get, "/api/:asset", func(c echo.Context) error {
			if !docs.ServeAsset(c.Response(), c.Request(), c.Param("asset")) {
				return notFound(c)
			}
			return nil
		})[0],
	} {
		// Without this, echo answers another method on a known path itself:
		// OPTIONS with 204 and an Allow header, the rest with 405 and Allow.
		// Express has no such answers: a 404 like any unknown route.
		e.RouteNotFound(r.Path, func(c echo.Context) error { return notFound(c) })
	}
}
