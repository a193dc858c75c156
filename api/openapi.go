package api

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// openAPI is the OpenAPI 3.1 document of the query API and the ingest
// routes, checked in as openapi.json. TestOpenAPIMatchesRoutes fails when
// a route is served but not documented, or documented but not served.
//
//go:embed openapi.json
var openAPI []byte

// openAPIETag identifies this build's document, for conditional GETs.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPI)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// OpenAPI returns the OpenAPI 3.1 document served at GET /openapi.json: the
// query API, health, readiness, metrics, the dashboard page and the ingest
// routes (with the Connect webhook at its default path,
// /connect/migration-events). The caller owns the returned bytes.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// handleOpenAPI serves GET /openapi.json, without a token: the document
// describes the API, not its data.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", openAPIETag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(openAPI))
	return nil
}
