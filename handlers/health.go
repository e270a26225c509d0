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
//
// Only the database decides the answer: it is 503 when the database does not
// answer. Redis only saves work (refreshes go on under the database's
// compare-and-swap without it), so a Redis that is down shows as "down" in
// info and details while the answer stays 200 and keeps this instance in
// its load balancer.
func (s *server) health(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	h := healthJSON{Status: "ok", Info: map[string]indicatorJSON{}, Error: map[string]indicatorJSON{}, Details: map[string]indicatorJSON{}}
	for _, check := range []struct {
		name     string
		dep      Pinger
		critical bool
		down     string
	}{
		{"database", s.db, true, "database is not answering"},
		{"redis", s.lock, false, "redis is not answering: refreshes go on under the database compare-and-swap alone"},
	} {
		if check.dep == nil {
			continue
		}
		ind := indicatorJSON{Status: "up"}
		if err := check.dep.Ping(ctx); err != nil {
			s.log.WarnContext(ctx, "health check: "+check.name+" down", "error", err.Error())
			ind = indicatorJSON{Message: check.down, Status: "down"}
		}
		h.Details[check.name] = ind
		if ind.Status == "down" && check.critical {
			h.Status = "error"
			h.Error[check.name] = ind
		} else {
			h.Info[check.name] = ind
		}
	}
	c.Response().Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	return writeJSON(c, status, h)
}
