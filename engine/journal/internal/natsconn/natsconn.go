// Package natsconn hands a journal's NATS connection to journaltest, for
// tests elsewhere that play an external client of the streams (an
// importer, a foreign publisher). The journal does not export it: no
// package but engine/journal talks to NATS.
package natsconn

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Of returns the connection and JetStream context of j, a
// *journal.Journal; package journal sets it.
var Of func(j any) (*nats.Conn, jetstream.JetStream)
