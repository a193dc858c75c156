// Package ingest is the thin HTTP layer in front of the journal: the Connect
// migration webhook and lifecycle callbacks, the Forge remote endpoint, the
// verification of the platform's tokens (Connect HS256 with qsh, signed
// installs RS256, Forge Invocation Tokens via JWKS) and the tenant registry.
//
// A request is answered 200 only after the journal has acknowledged the
// event; ingest never folds events or touches projections, and it logs no
// token or secret.
package ingest
