// Package api serves transferd's HTTP query API (DESIGN §6): transfers,
// lists, event history, state at a past point, lineage, migrations, a
// Server-Sent Events feed of envelopes and state changes, health,
// readiness, Prometheus metrics, and the dashboard at /.
//
// api only reads: it never appends to the journal nor writes to the
// projection. Current state, lists, lineage and migrations come from the
// projection (package projections); history, state at a past point and the
// feeds come from the journal.
//
// # Authentication
//
// Every /v1 route needs "Authorization: Bearer <token>" with one of
// Config.Tokens, compared in constant time against every token; otherwise
// 401 with WWW-Authenticate: Bearer. /healthz, /readyz, /metrics and /
// need no token: they show no event data, tenant or secret (metrics are
// counts by route, source, kind and status, and lag figures).
//
// Without an Authorization header, a /v1 route takes the dashboard's
// sign-in cookie instead (CookieName): POST /login with a form field
// "token" checks it the same way, opens a server-side session and sets its
// random id (never the token) as the cookie, HttpOnly, SameSite=Strict,
// Path=/ (Secure over TLS or behind X-Forwarded-Proto: https), then
// redirects (303) to the dashboard; POST /logout ends the session and
// clears the cookie. Sign-in attempts are rate-limited per client address
// (429 with Retry-After past a burst of 20, then one per 3 s). The token is
// only read from the form body, never from a URL. Cross-origin sign-in and
// sign-out requests are refused (403, http.CrossOriginProtection); the
// /v1 routes are GET only, and SameSite=Strict keeps other sites' pages
// from using the cookie.
//
// # Dashboard
//
// GET / shows the transfers with filters and paging, GET /transfers/{id}
// one transfer: its timeline of events as received, its facts, lineage
// and deadlines; both follow /v1/stream live. They are HTML shells and one
// script and style sheet embedded from web/ (served at /static/), no build
// step and nothing from elsewhere; the script fills them from the /v1 API
// with the cookie. Pages carry a Content-Security-Policy of 'self' with no
// inline script. Signed out, both show the sign-in form.
//
// # Routes
//
//	GET /v1/transfers/{id}            a transfer view (engine.View)
//	GET /v1/transfers/{id}?at=P       the view folded from the journal up to P: an RFC 3339
//	                                  time (receivedAt <= P) or a stream sequence (seq <= P)
//	GET /v1/transfers?migrationId=&cloudUrl=&tenant=&phase=&needsAction=true|false|settle&limit=1..500&cursor=
//	                                  {"transfers":[view…],"nextCursor":"…"}, newest first;
//	                                  nextCursor absent on the last page
//	GET /v1/transfers/{id}/events     {"events":[{"seq","receivedAt","duplicates","v","id","source",
//	                                  "kind","transferId","issuer","payload"}]}, stream order, each
//	                                  identity once at its first seq; payload verbatim
//	GET /v1/transfers/{id}/lineage    {"root":"<transferId>","transfers":[view…]}, oldest first
//	GET /v1/migrations/{migrationId}  {"migrationId","migration":{details},"transfers":[view…]}
//	GET /v1/stream                    Server-Sent Events, see below
//	GET /healthz                      {"status":"ok"}
//	GET /readyz                       Readiness: 200 ready, 503 not_ready with a reason
//	GET /metrics                      Prometheus text format
//	GET /                             the dashboard (or its sign-in form)
//	GET /transfers/{id}               the dashboard's page of a transfer
//	GET /static/{name}                the dashboard's script, style sheet and icon
//	POST /login, POST /logout         sign the dashboard in (form field token) and out
//
// Unknown query parameters, and parameters given twice, are refused (400
// naming the parameter), so that a misspelt filter never widens a query.
// Other methods are 405, other paths 404. Every error has the body
// {"error":{"code","message"[,"param"]}} with code invalid_request (400),
// unauthorized (401), not_found (404), method_not_allowed (405), internal
// (500) or unavailable (503, with Retry-After).
//
// # Stream
//
// GET /v1/stream?type=events (the default) sends the envelopes of stream
// MIGRATIONS: "id:" the stream sequence, "event:" the kind, "data:" the
// envelope with its "seq" as one line of JSON (a payload with line breaks
// is compacted; /events has the exact bytes). ?kind= and ?transferId=
// filter it. GET /v1/stream?type=transfers sends the transfer states the
// projector publishes on stream TRANSFERS: "id:" the TRANSFERS sequence,
// "event:" the phase, "data:" the transfer view; ?transferId= and ?phase=
// filter it. The feed of states coalesces: a transfer's latest state is
// always sent, intermediate versions may not be.
//
// A stream starts after the position given by the Last-Event-ID header,
// else ?lastEventId=, else just before ?from=, else at the end of the
// stream (new messages only). Its first block carries only "retry:" and
// "id:" with that position, so a client that reconnects with the last id
// it saw, even before any event, gets every later message once. Idle
// streams carry a comment every Config.Heartbeat.
package api
