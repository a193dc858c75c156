package api

import (
	"net/http"
)

// dashboard is the placeholder page at /: the dashboard proper comes later.
const dashboard = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>transferd</title></head>
<body>
<h1>transferd</h1>
<p>The query API needs a bearer token (<code>Authorization: Bearer &lt;token&gt;</code>).</p>
<ul>
<li><code>GET /v1/transfers</code>, <code>/v1/transfers/{id}</code>, <code>/v1/transfers/{id}/events</code>, <code>/v1/transfers/{id}/lineage</code></li>
<li><code>GET /v1/migrations/{migrationId}</code></li>
<li><code>GET /v1/stream</code> (Server-Sent Events)</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a></li>
</ul>
</body>
</html>
`

var htmlContentType = []string{"text/html; charset=utf-8"}

// handleDashboard serves GET /.
func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h["Content-Type"] = htmlContentType
	h["Cache-Control"] = noStore
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(dashboard))
	return nil
}
