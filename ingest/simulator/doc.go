// Package simulator plays Atlassian's app migration platform against a
// transferd server: it serves the platform's signing keys on loopback (the
// Connect signed-install keys and a Forge JWKS), installs Connect tenants,
// and delivers a seeded, realistic workload of Connect webhooks and Forge
// remote events — shuffled, partly duplicated, with re-runs and bad
// requests mixed in — over keep-alive HTTP, retrying each event until it is
// acknowledged as the platform does.
//
// Run reports what the server answered and, computed from the acknowledged
// events alone (never with engine.Fold), what every transfer must end up as,
// so that tests and newcomers can check a server end to end. It is also
// transferd's load generator.
//
// The simulator is a test and development tool: its keys live in memory and
// are trusted only by a server started with the key server's URLs. It never
// talks to Atlassian.
package simulator
