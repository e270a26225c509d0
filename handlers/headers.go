package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// CORS is the cross-origin policy, as NestJS's app.enableCors(options) sets
// it. The zero value, the default, sends no CORS headers at all: a browser
// page of another origin cannot call the service.
type CORS struct {
	Origins     []string // allowed origins; "*" for any
	Credentials bool     // Access-Control-Allow-Credentials: cookies and Authorization from the page
}

// cors answers preflights and marks answers as the cors package behind
// NestJS's enableCors does: its methods, the requested headers reflected,
// 204 for a preflight.
func cors(c CORS) echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:     c.Origins,
		AllowCredentials: c.Credentials,
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch,
			http.MethodPost, http.MethodDelete},
	})
}

// helmetHeaders are the headers NestJS apps get from helmet's defaults, less
// what only makes sense for pages served over TLS (see secureHeaders).
var helmetHeaders = [][2]string{
	{"Content-Security-Policy", "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Origin-Agent-Cluster", "?1"},
	{"Referrer-Policy", "no-referrer"},
	{"X-Content-Type-Options", "nosniff"},
	{"X-DNS-Prefetch-Control", "off"},
	{"X-Download-Options", "noopen"},
	{"X-Frame-Options", "SAMEORIGIN"},
	{"X-Permitted-Cross-Domain-Policies", "none"},
	{"X-XSS-Protection", "0"},
}

// contentSecurityPolicy is helmet's policy, with upgrade-insecure-requests
// behind TLS. The documentation page builds its own on it (openapi.NewDocs).
func contentSecurityPolicy(behindTLS bool) string {
	if behindTLS {
		return helmetHeaders[0][1] + ";upgrade-insecure-requests"
	}
	return helmetHeaders[0][1]
}

// secureHeaders sets helmet's headers on every answer. Behind TLS it also
// sends Strict-Transport-Security, and tells browsers to upgrade insecure
// requests, as helmet does; over plain HTTP (a developer's machine) either
// would break the page it protects.
func secureHeaders(behindTLS bool) echo.MiddlewareFunc {
	csp := contentSecurityPolicy(behindTLS)
	// The values are built once and shared by every answer: a one-element
	// slice has no room to grow, so a handler's Header.Add copies it rather
	// than write into another answer's, and Header.Set replaces it. Set
	// per request, they cost an allocation per header per answer.
	type header struct {
		key   string
		value []string
	}
	headers := make([]header, 0, len(helmetHeaders)+1)
	for _, kv := range helmetHeaders[1:] {
		headers = append(headers, header{kv[0], []string{kv[1]}})
	}
	headers = append(headers, header{"Content-Security-Policy", []string{csp}})
	if behindTLS {
		headers = append(headers, header{"Strict-Transport-Security", []string{"max-age=31536000; includeSubDomains"}})
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			for _, kv := range headers {
				h[kv.key] = kv.value
			}
			return next(c)
		}
	}
}
