package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/driver"
)

// Work is the importers' work queue (*driver.Work). tenant is the
// caller's scope: a tenant-scoped token's tenant, or "" for a
// partner-wide token.
type Work interface {
	Claim(ctx context.Context, tenant string) (*driver.Item, error)
	Report(ctx context.Context, tenant, transferID, key string, r driver.WorkReport) (engine.UploadWork, error)
	DeadLetters(tenant string) ([]driver.DeadLetter, error)
	Requeue(ctx context.Context, tenant, transferID, key, message string) (engine.UploadWork, error)
}

// ScopedToken is an API token of one tenant (a Connect clientKey or a
// Forge installation id): it may use only the work routes, and sees and
// reports only that tenant's work.
type ScopedToken struct {
	Tenant, Token string
}

// WorkResult is the body of a report or requeue: the upload's work as
// recorded.
type WorkResult struct {
	TransferID string            `json:"transferId"`
	Key        string            `json:"key"`
	Work       engine.UploadWork `json:"work"`
}

// DeadLetterList is the body of GET /v1/dead-letters.
type DeadLetterList struct {
	DeadLetters []driver.DeadLetter `json:"deadLetters"`
}

// maxWorkBody caps a report's or requeue's body.
const maxWorkBody = 16 << 10

var errNoWork = notFound("importer work is not enabled on this server (serve --work)")

func (s *Server) work() (Work, error) {
	if s.cfg.Work == nil {
		return nil, errNoWork
	}
	return s.cfg.Work, nil
}

// workErr maps the work queue's errors to replies.
func workErr(err error) error {
	switch {
	case errors.Is(err, driver.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, driver.ErrTenantMismatch):
		return &Error{Code: httperr.CodeTenantMismatch, Message: "the transfer belongs to another tenant than the token's"}
	case errors.Is(err, driver.ErrInvalid):
		return &Error{Code: httperr.CodeInvalidRequest, Param: "body", Message: "body: " + err.Error()}
	case errors.Is(err, driver.ErrConflict):
		return &Error{Code: httperr.CodeConflict, Message: err.Error()}
	}
	return storeErr(err)
}

// decodeBody reads a JSON body of at most maxWorkBody into v; an empty
// body leaves v alone.
func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxWorkBody+1))
	if err != nil {
		return invalidParam("body", "unreadable")
	}
	if len(b) > maxWorkBody {
		return invalidParam("body", "at most 16 KiB")
	}
	if len(b) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalidParam("body", "not the expected JSON object: "+err.Error())
	}
	return nil
}

// handleClaim serves POST /v1/work/claim: the next upload to import,
// leased to the caller, or 204 when there is none.
func (s *Server) handleClaim(w http.ResponseWriter, r *http.Request) error {
	wk, err := s.work()
	if err != nil {
		return err
	}
	it, err := wk.Claim(r.Context(), scopeOf(r))
	if err != nil {
		return workErr(err)
	}
	if it == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, it)
	return nil
}

// handleReport serves POST /v1/transfers/{id}/uploads/{key}/report.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) error {
	wk, err := s.work()
	if err != nil {
		return err
	}
	var rep driver.WorkReport
	if err := decodeBody(r, &rep); err != nil {
		return err
	}
	id, key := r.PathValue("id"), r.PathValue("key")
	res, err := wk.Report(r.Context(), scopeOf(r), id, key, rep)
	if err != nil {
		return workErr(err)
	}
	writeJSON(w, http.StatusOK, WorkResult{TransferID: id, Key: key, Work: res})
	return nil
}

// handleRequeue serves POST /v1/transfers/{id}/uploads/{key}/requeue.
func (s *Server) handleRequeue(w http.ResponseWriter, r *http.Request) error {
	wk, err := s.work()
	if err != nil {
		return err
	}
	var body struct {
		Message string `json:"message"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	id, key := r.PathValue("id"), r.PathValue("key")
	res, err := wk.Requeue(r.Context(), scopeOf(r), id, key, body.Message)
	if err != nil {
		return workErr(err)
	}
	writeJSON(w, http.StatusOK, WorkResult{TransferID: id, Key: key, Work: res})
	return nil
}

// handleDeadLetters serves GET /v1/dead-letters: an empty list when
// importer work is off.
func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) error {
	if _, err := values(r); err != nil {
		return err
	}
	if s.cfg.Work == nil { // importer work is off: nothing is listed
		writeJSON(w, http.StatusOK, DeadLetterList{DeadLetters: []driver.DeadLetter{}})
		return nil
	}
	dl, err := s.cfg.Work.DeadLetters(scopeOf(r))
	if err != nil {
		return workErr(err)
	}
	writeJSON(w, http.StatusOK, DeadLetterList{DeadLetters: dl})
	return nil
}

type scopeKey struct{}

// scopeOf is the tenant of the request's token; "" for a partner-wide
// token or a dashboard session.
func scopeOf(r *http.Request) string {
	s, _ := r.Context().Value(scopeKey{}).(string)
	return s
}

var errScopedToken = &Error{Code: httperr.CodeTenantMismatch, Message: "a tenant-scoped token may use only the work routes (claim, report, dead letters, requeue)"}
