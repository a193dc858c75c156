// Package atlassian is the wire protocol transferd shares with Atlassian's
// platform, and nothing else: the query string hash (qsh) that binds a
// Connect JWT to one request, the signing of Connect JWTs, and the claims of
// the three kinds of token the platform and transferd exchange:
//
//   - Connect JWTs (ConnectClaims): HS256 with an installation's shared
//     secret, signed by the platform on its webhooks and by the app on its
//     calls to a site's REST APIs;
//   - signed installs (ConnectClaims too): RS256, the key named by the kid
//     header on Atlassian's install keys server, on a first installed
//     callback;
//   - Forge Invocation Tokens (ForgeClaims): RS256 with a key of Forge's
//     key set, on a Forge app's remote triggers.
//
// The package decides nothing about trust: verifying tokens (pinned
// algorithms, required exp, lifetimes, key fetching, tenants) is the ingest
// package's, which reads them with these types. It imports only the
// standard library and golang-jwt, so that every side of the protocol (the
// ingest verifiers, the simulator standing in for the platform, the
// Notification API client and other outbound clients that call the platform
// as the app) can use it without depending on the server.
package atlassian

import "github.com/golang-jwt/jwt/v5"

// ContextQSH is the fixed qsh of Connect context tokens, which do not bind a
// request; a server-to-server call must never be accepted with it.
const ContextQSH = "context-qsh"

// ForgeIssuer is the iss of every Forge Invocation Token.
const ForgeIssuer = "forge/invocation-token"

// ConnectClaims are the claims of a Connect JWT and of a signed install: the
// registered claims (iss is the installation's clientKey from the platform,
// the app key from the app; a signed install also has aud = [the app's
// baseUrl] and sub) and qsh, the query string hash of the request (see QSH).
type ConnectClaims struct {
	jwt.RegisteredClaims
	QSH string `json:"qsh,omitempty"`
}

// ForgeClaims are the claims of a Forge Invocation Token that transferd
// reads or, standing in for Forge, writes.
type ForgeClaims struct {
	jwt.RegisteredClaims
	App     ForgeApp     `json:"app"`
	Context ForgeContext `json:"context"`
}

// ForgeApp is the app claim of a Forge Invocation Token.
type ForgeApp struct {
	// ID is the app's ARI, ari:cloud:ecosystem::app/<uuid>.
	ID         string `json:"id"`
	AppVersion string `json:"appVersion"`
	// InstallationID is the installation that made the call,
	// ari:cloud:ecosystem::installation/<uuid>.
	InstallationID string `json:"installationId"`
	// APIBaseURL is where calls back to the product go.
	APIBaseURL  string           `json:"apiBaseUrl"`
	Environment ForgeEnvironment `json:"environment"`
	Module      ForgeModule      `json:"module"`
}

// ForgeEnvironment is app.environment: its type (DEVELOPMENT, STAGING,
// PRODUCTION) and id.
type ForgeEnvironment struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// ForgeModule is app.module, the manifest module that made the call.
type ForgeModule struct {
	Type string `json:"type,omitempty"`
	Key  string `json:"key"`
}

// ForgeContext is the context claim of a Forge Invocation Token.
type ForgeContext struct {
	CloudID string `json:"cloudId"`
}
