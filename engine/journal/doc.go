// Package journal is transferd's event log on NATS JetStream: it starts an
// embedded nats-server (or connects to an external NATS), ensures the
// MIGRATIONS and TRANSFERS streams and the tenants and bindings KV buckets,
// appends events to MIGRATIONS, and reads them back in stream order.
//
// An event is written as an envelope (DESIGN §5) whose payload holds the
// bytes exactly as received. Append returns only after JetStream has
// acknowledged the message, and every failure to obtain that
// acknowledgement is an ErrUnavailable.
//
// The journal never interprets events beyond the envelope: it routes them by
// source, transfer id and kind, and leaves parsing, validation and folding to
// package engine.
package journal
