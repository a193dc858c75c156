// Package journal is transferd's event log on NATS JetStream: it starts an
// embedded nats-server (or connects to an external NATS), ensures the
// MIGRATIONS and TRANSFERS streams and the tenants and claims (bindings) KV buckets,
// appends events to MIGRATIONS, and reads them back in stream order.
//
// It is package engine's log, and the only package of transferd that talks
// to NATS: the others append and Read events, follow TRANSFERS with
// ReadTransfers, ask State and StoredAt for health, AppendOwned and look up Owner
// of transfers, and keep tenants in Tenants, through types of this
// package; subjects are built and parsed here (EventFilter, TransferFilter,
// ParseTransferSubject). A failure to reach NATS wraps ErrUnavailable; a
// missing key is ErrNotFound and a lost race on one ErrConflict.
//
// An event is written as an envelope (DESIGN §5) whose payload holds the
// bytes exactly as received. Append returns only after JetStream has
// acknowledged the message, and every failure to obtain that
// acknowledgement is an ErrUnavailable.
//
// What an acknowledgement survives depends on Config.SyncAlways and the
// server (see Durability and docs/durability.md). With SyncAlways the
// acknowledged message is on disk, and concurrent appends share the cost:
// on the embedded server they share each fsync of the stream's files
// (GroupCommitSync), on an external NATS one atomic batch
// (GroupCommitAtomic). The power-cut test in internal/powercut proves it.
//
// The journal never interprets events beyond the envelope: it routes them by
// source, transfer id and kind, and leaves parsing, validation and folding to
// package engine.
package journal
