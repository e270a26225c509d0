package openapi_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tokenrelay/authsvc/openapi"
	"github.com/tokenrelay/authsvc/openapi/openapitest"
)

// TestDocument: the document is OpenAPI 3.1 that kin-openapi loads and
// validates (its examples included), and JSON hands out copies.
func TestDocument(t *testing.T) {
	t.Parallel()
	doc := openapi.JSON()
	var head struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(doc, &head); err != nil || head.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q (%v), want 3.1.0", head.OpenAPI, err)
	}
	if _, err := openapitest.New(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	doc[0] = 'x'
	if bytes.Equal(doc, openapi.JSON()) {
		t.Error("changing what JSON returned changed the document")
	}
}
