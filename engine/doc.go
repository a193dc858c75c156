// Package engine is transferd's domain: the canonical migration Event parsed
// from Connect and Forge payloads, the Transfer it folds into, the Phase
// machine (looplab/fsm) that moves a transfer only upward by rank, and the
// Fold that makes a transfer's state independent of the order and
// multiplicity of its events.
//
// engine is pure and deterministic: it performs no I/O, reads no clock,
// and imports nothing from NATS or bbolt. Times come in on the events. Its
// log is package engine/journal, on NATS JetStream.
package engine
