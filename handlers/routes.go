package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes installs every route of the API. GET routes answer HEAD too, as
// Express's do; any other method or path is Express's 404.
func (s *server) routes(e *echo.Echo) {
	e.POST("/auth/register", s.register)
	e.POST("/auth/login", s.login)
	e.POST("/auth/refresh", s.refresh)
	e.POST("/auth/logout", s.logout)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/auth/me", s.me)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/health", s.health)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/metrics",
		echo.WrapHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))
}
