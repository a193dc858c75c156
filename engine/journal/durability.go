package journal

import "fmt"

// Durability says what an acknowledged append survives, as far as the
// journal can tell: the sync policy of an embedded server is its own, and
// an external server's is not visible to clients.
type Durability struct {
	// Embedded reports an embedded server; SyncAlways that it syncs every
	// write to disk before acknowledging it.
	Embedded, SyncAlways bool
	// Replicas is the number of replicas of stream MIGRATIONS, as its
	// server reports it.
	Replicas int
	// GroupCommit is how concurrent appends share a commit (never
	// GroupCommitAuto).
	GroupCommit GroupCommit
	// AtomicBatches reports that the stream accepts atomic batches (false
	// on a server older than 2.12, where GroupCommitAtomic publishes every
	// append on its own).
	AtomicBatches bool
	// ServerVersion is the version of the server the journal is connected
	// to.
	ServerVersion string
	// Guarantee says in a sentence what an acknowledgement (HTTP 200) means.
	Guarantee string
	// Warning is set when an acknowledged append may be lost by a single
	// host crash or power cut.
	Warning string
}

// Durability describes what an acknowledged append survives with this
// journal's configuration and server.
func (j *Journal) Durability() Durability { return j.durability }

func (j *Journal) describe(replicas int, atomicOK bool) Durability {
	d := Durability{
		Embedded:      j.srv != nil,
		SyncAlways:    j.srv != nil && j.cfg.SyncAlways,
		Replicas:      replicas,
		GroupCommit:   j.cfg.GroupCommit,
		AtomicBatches: atomicOK,
		ServerVersion: j.nc.ConnectedServerVersion(),
	}
	switch {
	case d.SyncAlways:
		d.Guarantee = "on disk: every acknowledged event was synced to disk before its acknowledgement; " +
			"it survives a process crash, a host crash and a power cut, not the loss of the disk"
	case d.Embedded:
		d.Guarantee = "in the operating system's page cache: an acknowledged event survives a process crash; " +
			"JetStream syncs to disk every 2 minutes, so a host crash or power cut loses up to 2 minutes of acknowledged events"
		d.Warning = "sync interval on a single node: a host crash or power cut can lose acknowledged events (use --sync always)"
	case replicas > 1:
		d.Guarantee = fmt.Sprintf("replicated: every acknowledged event is held by a majority of %d servers "+
			"(on disk only if they run with sync_interval: always); it survives a process crash, host crash, "+
			"power cut or disk loss of a minority of them", replicas)
	default:
		d.Guarantee = "on one external server: what an acknowledged event survives is that server's sync policy " +
			"(JetStream's default syncs every 2 minutes)"
		d.Warning = "one replica on an external NATS whose sync policy transferd cannot see: unless the server " +
			"runs with sync_interval: always, a host crash or power cut of it can lose acknowledged events (or use --replicas 3)"
	}
	return d
}

// logDurability says at start what an acknowledgement means, and warns
// where it may not survive a host crash.
func (j *Journal) logDurability() {
	log := j.cfg.Logger
	if log == nil {
		return
	}
	d := j.durability
	log.Info("journal durability", "guarantee", d.Guarantee, "embedded", d.Embedded, "syncAlways", d.SyncAlways,
		"replicas", d.Replicas, "groupCommit", d.GroupCommit.String(), "server", d.ServerVersion)
	if d.GroupCommit == GroupCommitAtomic && !d.AtomicBatches {
		log.Warn("journal: the server does not support atomic batches (nats-server 2.12 or later does): "+
			"every append is published and acknowledged on its own", "server", d.ServerVersion)
	}
	if d.Warning != "" {
		log.Warn("journal: " + d.Warning)
	}
}
