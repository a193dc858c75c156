package api_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/transferd/transferd/api/httperr"
)

// TestOpenAPIErrorCodes: the error codes the document lists for the query
// API and the ingest routes are httperr's, and every httperr code is listed
// for at least one of them.
func TestOpenAPIErrorCodes(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties struct {
					Error struct {
						Properties struct {
							Code struct {
								Enum []string `json:"enum"`
							} `json:"code"`
						} `json:"properties"`
					} `json:"error"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, schema := range []string{"QueryError", "IngestError"} {
		enum := doc.Components.Schemas[schema].Properties.Error.Properties.Code.Enum
		if len(enum) == 0 {
			t.Fatalf("%s lists no codes", schema)
		}
		for _, code := range enum {
			if _, ok := httperr.Status(code); !ok {
				t.Errorf("%s lists %q, not an httperr code", schema, code)
			}
			listed[code] = true
		}
	}
	for _, code := range httperr.Codes() {
		if !listed[code] {
			t.Errorf("httperr code %q is not in the document", code)
		}
	}
	if !slices.Contains(doc.Components.Schemas["IngestError"].Properties.Error.Properties.Code.Enum, httperr.CodeUnavailable) {
		t.Error("IngestError does not list unavailable")
	}
}
