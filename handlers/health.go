package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// healthJSON is @nestjs/terminus's health-check result.
type healthJSON struct {
	Status  string                   `json:"status"`
	Info    map[string]indicatorJSON `json:"info"`
	Error   map[string]indicatorJSON `json:"error"`
	Details map[string]indicatorJSON `json:"details"`
}

type indicatorJSON struct {
	Message string `json:"message,omitempty"`
	Status  string `json:"status"`
}

// health checks every dependency, as terminus does: the database always,
// Redis when the lock lives there. A failure says which, never why: the
// driver's text stays in the log.
func (s *server) health(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	h := healthJSON{Status: "ok", Info: map[string]indicatorJSON{}, Error: map[string]indicatorJSON{}, Details: map[string]indicatorJSON{}}
	for _, check := range []struct {
		name string
		dep  Pinger
	}{{"database", s.db}, {"redis", s.lock}} {
		if check.dep == nil {
			continue
		}
		ind := indicatorJSON{Status: "up"}
		if err := check.dep.Ping(ctx); err != nil {
			s.log.ErrorContext(ctx, "health check: "+check.name+" down", "error", err.Error())
			ind = indicatorJSON{Message: check.name + " is not answering", Status: "down"}
			h.Status = "error"
			h.Error[check.name] = ind
		} else {
			h.Info[check.name] = ind
		}
		h.Details[check.name] = ind
	}
	c.Response().Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	return writeJSON(c, status, h)
}
