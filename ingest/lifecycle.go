package ingest

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
)

// installPayload is the body of the Connect installed/uninstalled callbacks.
type installPayload struct {
	Key          string `json:"key"`
	ClientKey    string `json:"clientKey"`
	SharedSecret string `json:"sharedSecret"`
	BaseURL      string `json:"baseUrl"`
	ProductType  string `json:"productType"`
	CloudID      string `json:"cloudId"`
	EventType    string `json:"eventType"`
}

// Lifecycle is the reply to an installed or uninstalled callback.
type Lifecycle struct {
	ClientKey   string `json:"clientKey"`
	Installed   bool   `json:"installed"`
	Unsigned    bool   `json:"unsigned,omitempty"`
	SignedBy    string `json:"signedBy,omitempty"` // "atlassian" or "shared-secret"
	Uninstalled bool   `json:"uninstalled,omitempty"`
}

func (h *Handler) readInstall(w http.ResponseWriter, r *http.Request, needSecret bool) (installPayload, error) {
	body, err := h.readJSON(w, r)
	if err != nil {
		return installPayload{}, err
	}
	var p installPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fail(httperr.CodeInvalidPayload, "body must be a JSON object with clientKey and sharedSecret strings", err)
	}
	switch {
	case p.ClientKey == "":
		return p, fail(httperr.CodeInvalidPayload, "clientKey: required, a non-empty string", nil)
	case needSecret && p.SharedSecret == "":
		return p, fail(httperr.CodeInvalidPayload, "sharedSecret: required, a non-empty string", nil)
	case len(p.ClientKey) > 256 || len(p.SharedSecret) > 1024:
		return p, fail(httperr.CodeInvalidPayload, "clientKey or sharedSecret too long", nil)
	case !engine.ValidIssuer(p.ClientKey):
		return p, fail(httperr.CodeInvalidPayload, "clientKey may contain only printable ASCII characters without spaces", nil)
	}
	return p, nil
}

// verifyLifecycle authenticates a lifecycle request for clientKey. An
// unsigned request passes only when allowed and only for a tenant that is
// not installed yet: an unsigned call must never replace a secret.
func (h *Handler) verifyLifecycle(r *http.Request, clientKey string, out *Lifecycle) error {
	if r.Header.Get("Authorization") == "" && r.URL.Query().Get("jwt") == "" && h.cfg.AllowUnsignedInstall && r.URL.Path == "/connect/installed" {
		if t, err := h.tenants.Get(r.Context(), clientKey); err == nil && t.Active() {
			return authErr(httperr.CodeMissingToken, "tenant "+clientKey+" is installed: a re-install must be signed with its shared secret", nil)
		} else if err != nil && !errors.Is(err, ErrUnknownTenant) {
			return err
		}
		out.Unsigned = true
		return nil
	}
	if h.install == nil {
		return authErr(httperr.CodeInvalidAudience, "signed lifecycle callbacks need the app's base URL: start serve with --base-url", nil)
	}
	how, err := h.install.Verify(r, clientKey)
	if err != nil {
		return err
	}
	out.SignedBy = how.String()
	return nil
}

func (h *Handler) handleInstalled(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
	p, err := h.readInstall(w, r, true)
	if err != nil {
		return nil, err
	}
	out := Lifecycle{ClientKey: p.ClientKey, Installed: true}
	if err := h.verifyLifecycle(r, p.ClientKey, &out); err != nil {
		return nil, err
	}
	t := Tenant{
		ClientKey: p.ClientKey, SharedSecret: p.SharedSecret, BaseURL: p.BaseURL,
		ProductType: p.ProductType, AppKey: p.Key, CloudID: p.CloudID,
		InstalledAt: h.cfg.Now().UTC(),
	}
	if err := h.tenants.Put(r.Context(), t); err != nil {
		return nil, err
	}
	h.cfg.Logger.Info("tenant installed", "clientKey", p.ClientKey, "baseUrl", p.BaseURL, "signedBy", out.SignedBy, "unsigned", out.Unsigned)
	return out, nil
}

func (h *Handler) handleUninstalled(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
	p, err := h.readInstall(w, r, false)
	if err != nil {
		return nil, err
	}
	out := Lifecycle{ClientKey: p.ClientKey, Uninstalled: true}
	if err := h.verifyLifecycle(r, p.ClientKey, &out); err != nil {
		return nil, err
	}
	if err := h.tenants.Uninstall(r.Context(), p.ClientKey, h.cfg.Now()); err != nil {
		if errors.Is(err, ErrUnknownTenant) {
			return nil, authErr(httperr.CodeUnknownTenant, "tenant "+p.ClientKey+" is not installed", err)
		}
		return nil, err
	}
	h.cfg.Logger.Info("tenant uninstalled", "clientKey", p.ClientKey)
	return out, nil
}
