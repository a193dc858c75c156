package simulator

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
)

// BadKind is a kind of bad request the simulator mixes in. Each must be
// refused, with the status of Want.
type BadKind string

// The bad requests.
const (
	BadNoToken          BadKind = "no-token"            // no Authorization header: 401
	BadWrongKey         BadKind = "wrong-key"           // Connect: wrong shared secret; Forge: a signature the JWKS key does not verify: 401
	BadExpiredToken     BadKind = "expired-token"       // exp ten minutes ago: 401
	BadWrongQSH         BadKind = "wrong-qsh"           // Connect token for another path: 401
	BadMalformedJSON    BadKind = "malformed-json"      // a truncated body: 400
	BadMissingTransfer  BadKind = "missing-transfer-id" // no transferId: 400
	BadUploadWithoutKey BadKind = "upload-without-key"  // app-data-uploaded without s3Key/key: 400
	BadContentType      BadKind = "wrong-content-type"  // text/plain: 415
	BadCrossTenant      BadKind = "cross-tenant"        // an event for another tenant's transfer: 403
)

// BadKinds lists every bad request kind.
var BadKinds = []BadKind{
	BadNoToken, BadWrongKey, BadExpiredToken, BadWrongQSH, BadMalformedJSON,
	BadMissingTransfer, BadUploadWithoutKey, BadContentType, BadCrossTenant,
}

// Want is the status a server must refuse k with (DESIGN §6).
func (k BadKind) Want() int {
	switch k {
	case BadMalformedJSON, BadMissingTransfer, BadUploadWithoutKey:
		return http.StatusBadRequest
	case BadContentType:
		return http.StatusUnsupportedMediaType
	case BadCrossTenant:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// authMode is how a request is signed.
type authMode int

const (
	authValid authMode = iota
	authNone
	authWrongKey
	authExpired
	authWrongQSH
)

// badRequest is one request the server must refuse.
type badRequest struct {
	kind        BadKind
	sender      *tenant
	auth        authMode
	contentType string
	body        []byte
	id          string // the identity the server would give it, when it parses
	transferID  string
	// target and deferred: a cross-tenant request that only the binding of
	// the transfer to its owner refuses is sent after the owner's first
	// acknowledged event; sent earlier, it would claim the transfer.
	target   *transfer
	deferred bool
}

// badRequests draws n bad requests, cycling through the kinds that apply
// to the run's tenants so that every one appears when n allows.
func (w *workload) badRequests(r *rand.Rand, n int) ([]*badRequest, error) {
	var connect []*transfer
	for _, t := range w.transfers {
		if t.tenant.source == engine.SourceConnect {
			connect = append(connect, t)
		}
	}
	var kinds []BadKind
	for _, k := range BadKinds {
		switch {
		case k == BadWrongQSH && len(connect) == 0:
		case k == BadCrossTenant && len(w.tenants) < 2:
		default:
			kinds = append(kinds, k)
		}
	}
	if n == 0 || len(w.transfers) == 0 {
		return nil, nil
	}
	out := make([]*badRequest, 0, n)
	first := r.IntN(len(kinds))
	for i := range n {
		kind := kinds[(first+i)%len(kinds)]
		t := pick(r, w.transfers)
		if kind == BadWrongQSH {
			t = pick(r, connect)
		}
		b := &badRequest{kind: kind, sender: t.tenant, contentType: "application/json", transferID: t.id}
		evKind := pick(r, []engine.Kind{engine.KindListenerTriggered, engine.KindAppDataUploaded})
		fields := func() map[string]any {
			f := eventFields(r, t, b.sender, evKind, nil)
			if evKind == engine.KindAppDataUploaded {
				f[uploadKeyField(b.sender.source)] = uuid(r)
			}
			// A fresh identity: never one of a good event.
			f["messageId"] = uuid(r)
			return f
		}
		var f map[string]any
		switch kind {
		case BadNoToken:
			b.auth, f = authNone, fields()
		case BadWrongKey:
			b.auth, f = authWrongKey, fields()
		case BadExpiredToken:
			b.auth, f = authExpired, fields()
		case BadWrongQSH:
			b.auth, f = authWrongQSH, fields()
		case BadContentType:
			b.contentType, f = "text/plain; charset=utf-8", fields()
		case BadMissingTransfer:
			f = fields()
			delete(f, "transferId")
			b.transferID = ""
		case BadUploadWithoutKey:
			evKind = engine.KindAppDataUploaded
			f = fields()
			delete(f, uploadKeyField(b.sender.source))
		case BadMalformedJSON:
			body := encodeEvent(r, b.sender.source, fields())
			b.body = body[:1+r.IntN(len(body)-2)]
		case BadCrossTenant:
			b.target = t
			b.sender = pick(r, otherTenants(w.tenants, t.tenant))
			f = fields()
			// A Connect body naming the owner's client key is refused by
			// the client-key check whatever the order; every other
			// cross-tenant request only by the transfer's binding.
			b.deferred = !(b.sender.source == engine.SourceConnect && t.tenant.source == engine.SourceConnect)
		}
		if b.body == nil {
			b.body = encodeEvent(r, b.sender.source, f)
		}
		if e, err := engine.Parse(b.sender.source, b.body); err == nil {
			b.id = e.ID
		}
		out = append(out, b)
	}
	return out, nil
}

func otherTenants(all []*tenant, not *tenant) []*tenant {
	var out []*tenant
	for _, t := range all {
		if t != not {
			out = append(out, t)
		}
	}
	return out
}

// decodeError reads the code and message of an error reply (DESIGN §6).
func decodeError(body []byte) (code, msg string) {
	var e httperr.Body
	if json.Unmarshal(body, &e) == nil {
		return e.Error.Code, e.Error.Message
	}
	return "", ""
}
