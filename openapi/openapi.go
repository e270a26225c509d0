// Package openapi is the service's HTTP contract as an OpenAPI 3.1
// document, openapi.json: every route, request body, answer, error shape
// and header. It holds the document, its checks (package openapitest holds
// every answer the tests get to it, so it cannot drift from the service)
// and its UI: Docs serves it at GET /api-json and Swagger UI at GET /api.
package openapi

import (
	_ "embed" // the document is compiled in
)

//go:embed openapi.json
var document []byte

// JSON returns the document, exactly as the repository holds it; the caller
// may keep or change the slice.
func JSON() []byte {
	return append([]byte(nil), document...)
}
