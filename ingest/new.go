package ingest

import (
	"context"
	"errors"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
)

// New returns the ingest handler. ctx bounds the background refresh of the
// Forge key set: cancel it when the server stops.
func New(ctx context.Context, cfg Config, j Journal, tenants *Registry) (*Handler, error) {
	cfg = cfg.withDefaults()
	if j == nil || tenants == nil {
		return nil, errors.New("ingest: New needs a journal and a tenant registry")
	}
	h := &Handler{cfg: cfg, journal: j, tenants: tenants, owners: newOwnerCache(defaultOwnerCache), forgeCreds: newForgeCredentials(1 << 16), mux: http.NewServeMux(), refusal: newRefusalLog(cfg.Logger)}
	var err error
	if h.connect, err = NewConnectVerifier(tenants, ConnectConfig{BaseURL: cfg.BaseURL, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if cfg.BaseURL != "" {
		h.install, err = NewInstallVerifier(previousSecrets{tenants}, InstallConfig{
			BaseURL: cfg.BaseURL, KeysURL: cfg.InstallKeysURL, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.AppARI != "" {
		h.forge, err = NewForgeVerifier(ctx, ForgeConfig{AppARI: cfg.AppARI, JWKSURL: cfg.JWKSURL, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		switch {
		case cfg.ForgeCredentials == nil:
		case tenants.keys == nil:
			cfg.Logger.Warn("ingest: no secrets key: Forge credentials are kept in memory only, so after a restart a Forge message is acknowledged only once its installation sends another event")
		default:
			h.forgeCreds.persist(ctx, cfg.ForgeCredentials, tenants.keys, cfg.Logger)
		}
	}

	h.mux.Handle("POST "+cfg.ConnectPath, h.observe("connect", "connect", h.handleConnect))
	h.mux.Handle("POST /connect/installed", h.observe("installed", "connect", h.needInstall(h.handleInstalled)))
	h.mux.Handle("POST /connect/uninstalled", h.observe("uninstalled", "connect", h.needInstall(h.handleUninstalled)))
	h.mux.Handle("POST /forge/migration-events", h.observe("forge", "forge", h.needForge(h.handleForge)))
	for _, p := range h.Routes() {
		path := p[len("POST "):]
		h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "POST")
			o := Outcome{Route: "method"}
			var msg string
			o.Status, o.Code, msg = writeErrorMsg(w, h.cfg.Logger, fail(httperr.CodeMethodNotAllowed, r.Method+" is not allowed on "+path+": use POST", nil))
			h.refusal.refused(r, &o, msg)
		})
	}
	return h, nil
}

// Close writes the Forge credentials not yet stored (each write bounded)
// and stops their writer; the writer also stops when New's ctx ends.
// Call it once the HTTP server has stopped, before the journal closes.
func (h *Handler) Close() error {
	h.forgeCreds.close()
	return nil
}

type stage func(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error)

// needInstall refuses lifecycle calls when no base URL is configured: a
// signed install names the app's base URL as its audience.
func (h *Handler) needInstall(next stage) stage {
	return func(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
		if h.install == nil && !h.cfg.AllowUnsignedInstall {
			return nil, authErr(httperr.CodeInvalidAudience, "lifecycle callbacks need the app's base URL: start serve with --base-url", nil)
		}
		return next(w, r, o)
	}
}

// needForge refuses Forge events when no app ARI is configured: a token's
// audience can only be checked against a pinned one.
func (h *Handler) needForge(next stage) stage {
	return func(w http.ResponseWriter, r *http.Request, o *Outcome) (any, error) {
		if h.forge == nil {
			return nil, authErr(httperr.CodeInvalidAudience, "Forge events are not enabled: start serve with --forge-app-ari", nil)
		}
		return next(w, r, o)
	}
}
