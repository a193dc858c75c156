package api

import "net/http"

// handleReconciliation serves GET /v1/reconciliation: what the last
// reconciliation with the platform found (transfers and uploads whose
// webhooks never arrived), or 404 when it is off.
func (s *Server) handleReconciliation(w http.ResponseWriter, r *http.Request) error {
	if _, err := values(r); err != nil {
		return err
	}
	if s.cfg.Reconciliation == nil {
		return notFound("reconciliation with the platform is off (serve --drive --reconcile-interval)")
	}
	writeJSON(w, http.StatusOK, s.cfg.Reconciliation())
	return nil
}
