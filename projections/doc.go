// Package projections is transferd's read side. A Projector folds the
// MIGRATIONS stream, batch by batch, through the engine into a bbolt Store
// (transfers, indexes for the query API, re-run lineage, the event
// identities already applied, and the checkpoint, all committed together
// in one transaction per batch) and publishes every changed transfer's new
// state on the TRANSFERS stream and to an in-process hook. The Store
// answers the query API: a transfer, filtered newest-first listings with
// stable cursors, a migration's transfers, a lineage. Rebuild and Verify
// rebuild a store from the stream and compare it with the live one.
//
// The stream is the source of truth and a store is disposable: everything
// in it is a deterministic function of the stream up to its checkpoint, so
// a rebuild equals the live store byte for byte.
//
// projections never writes the MIGRATIONS stream: it reads it from the
// checkpoint and publishes only on TRANSFERS. It never keeps all transfers
// in memory: a batch loads the transfers it touches, once, and forgets
// them after its commit.
package projections
