// Package openapi holds the service's OpenAPI 3.1 document, openapi.json:
// every route, request body, answer, error shape and header of the HTTP
// contract. The server serves it at GET /api-json; tests hold every answer
// they get to it, so it cannot drift from the service.
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
