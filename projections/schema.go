package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/transferd/transferd/engine"
)

// schemaVersion is the layout this code reads and writes. Open refuses a
// file of an older version (ErrOldSchema, which transferd serve answers by
// rebuilding it from the stream) and of any other (ErrSchema); Rebuild
// writes this one and carries an older file's outbox. The meta
// bucket's "schema" and "checkpoint" keys keep their meaning in every
// version, so that any version can tell what a file is and how far it got.
const schemaVersion = 3

// The store's layout (schema version 3). Every transfer has a row: the
// stream sequence of the first event applied to it. Rows never change and
// grow with the stream, so the big buckets are keyed by row and filled
// almost in append order (new transfers at the end, recent transfers
// updated near the end), which keeps each batch's dirty pages few and
// contiguous, and a row is also each transfer's place in the "newest
// first" order of List.
//
//	meta          schema, checkpoint, lastEventAt, counters (see meta keys)
//	ids           transferId → row (8 bytes, big-endian)
//	transfers     row → canonical JSON of engine.Transfer (Transfer.MarshalCanonical)
//	              ‖ 0x00 ‖ the identities applied to it, ascending: the first 16
//	              bytes of the SHA-256 of each event key (engine.Event.Key), 16 bytes each
//	by_migration  len ‖ migrationId ‖ len ‖ issuer ‖ row → ∅
//	by_cloud      len ‖ cloudUrl ‖ len ‖ issuer ‖ row → ∅
//	by_tenant     len ‖ issuer ‖ row → ∅
//	by_phase      len ‖ phase ‖ row → ∅
//	needs_action  len ‖ action ‖ row → ∅ (only transfers that need one)
//	lineage       'o' ‖ original ‖ 0x00 ‖ rerun → ∅  (original → re-runs)
//	              'r' ‖ rerun → original             (re-run → original)
//	outbox        row → version: changed transfers whose state the feed has
//	              not yet confirmed published (see Projector)
//	parked        stream sequence → JSON ParkedEvent: events the projector
//	              could not fold (see Parked). Added within version 1: Open
//	              creates it in a file that lacks it, and a read-only
//	              store without it has parked nothing.
//
// A transfer's applied identities live in its row (version 3; version 2
// had a bucket "applied" of row ‖ key → sequence): every event rewrites its
// transfer's row anyway, and a bucket of its own cost every event one more
// page written, a random one, at a third of the file's writes. Canonical
// JSON never holds a 0x00 byte (JSON escapes it), so the first one ends
// it.
//
// len is the uvarint length of the value, so that no value's keys can be
// mistaken for another's whatever bytes the values contain. Index entries
// exist only for non-empty values (the issuer may be empty). by_migration
// and by_cloud are keyed by tenant (version 2; version 1 had value ‖ row,
// and its transfers no triggeredAt):
// one tenant's transfers of a migration id or cloud URL are one prefix,
// listed newest first by a cursor that stays inside it, and the tenants
// using a value are listed by skipping from one tenant's prefix to the
// next (tenantsOf). Transfer ids cannot contain 0x00
// (engine.ValidID), which makes the lineage keys unambiguous.
var (
	bucketMeta        = []byte("meta")
	bucketIDs         = []byte("ids")
	bucketTransfers   = []byte("transfers")
	bucketByMigration = []byte("by_migration")
	bucketByCloud     = []byte("by_cloud")
	bucketByTenant    = []byte("by_tenant")
	bucketByPhase     = []byte("by_phase")
	bucketNeedsAction = []byte("needs_action")
	bucketLineage     = []byte("lineage")
	bucketOutbox      = []byte("outbox")
	bucketParked      = []byte("parked")
)

// buckets lists every bucket of the schema.
var buckets = [][]byte{
	bucketMeta, bucketIDs, bucketTransfers,
	bucketByMigration, bucketByCloud, bucketByTenant, bucketByPhase, bucketNeedsAction,
	bucketLineage, bucketOutbox, bucketParked,
}

// optional reports whether a bucket may be missing from a file of this
// schema version (one written before the bucket was added).
func optional(name []byte) bool { return string(name) == string(bucketParked) }

// Fill percents for buckets written in (nearly) ascending key order: bbolt
// splits a full page at this fraction, so packing them tighter than the
// default 0.5 halves their size without causing splits in the middle.
const fillRows = 0.8 // transfers: updated in place and growing a little

// Meta keys. Values are 8-byte big-endian integers unless noted.
var (
	metaSchema      = []byte("schema")
	metaCheckpoint  = []byte("checkpoint")  // last stream sequence applied
	metaLastEventAt = []byte("lastEventAt") // receivedAt of the last event applied, Unix nanoseconds

	// Counters, all deterministic functions of the stream up to the
	// checkpoint (Verify compares them).
	metaTransfers   = []byte("count.transfers")
	metaEvents      = []byte("count.events")     // distinct events applied
	metaDuplicates  = []byte("count.duplicates") // events whose identity was already applied
	metaUnparsable  = []byte("count.unparsable") // applied as unknown: payload no longer parses
	metaCorrupt     = []byte("count.corrupt")    // messages that are not envelopes, skipped
	metaParked      = []byte("count.parked")     // events that could not be folded, parked
	metaNeedsAction = []byte("count.needsAction")
	metaPhasePrefix = "count.phase." // + phase
)

func metaPhase(p engine.Phase) []byte { return []byte(metaPhasePrefix + string(p)) }

// index is a secondary index: which bucket, and the value a transfer is
// filed under ("" for none).
type index struct {
	bucket []byte
	value  func(*engine.Transfer) string
	// byTenant files a transfer under its value and then its issuer.
	byTenant bool
}

// prefix is the part of t's key in ix before the row; "" when t has no
// entry.
func (ix index) prefix(t *engine.Transfer) string {
	v := ix.value(t)
	if v == "" {
		return ""
	}
	p := indexPrefix(v)
	if ix.byTenant {
		p = append(p, indexPrefix(t.Issuer)...)
	}
	return string(p)
}

var (
	indexMigration = index{bucketByMigration, func(t *engine.Transfer) string {
		if t.Migration == nil {
			return ""
		}
		return t.Migration.MigrationID
	}, true}
	indexCloud = index{bucketByCloud, func(t *engine.Transfer) string {
		if t.Migration == nil {
			return ""
		}
		return t.Migration.CloudURL
	}, true}
	indexTenant      = index{bucketByTenant, func(t *engine.Transfer) string { return t.Issuer }, false}
	indexPhase       = index{bucketByPhase, func(t *engine.Transfer) string { return string(t.Phase) }, false}
	indexNeedsAction = index{bucketNeedsAction, func(t *engine.Transfer) string { return t.NeedsAction() }, false}

	indexes = []index{indexMigration, indexCloud, indexTenant, indexPhase, indexNeedsAction}
)

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// getU64 decodes an 8-byte big-endian integer; anything else is 0.
func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func rowKey(row uint64) []byte { return u64(row) }

// identity is what a row keeps of an applied event key.
type identity [identitySize]byte

const identitySize = 16

func identityOf(key string) identity {
	sum := sha256.Sum256([]byte(key))
	return identity(sum[:identitySize])
}

// rowJSON returns the canonical JSON of a transfers value.
func rowJSON(v []byte) []byte {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		return v[:i]
	}
	return v
}

// rowIdentities returns the applied identities of a transfers value, in
// ascending order, copied out of v.
func rowIdentities(v []byte) ([]identity, error) {
	i := bytes.IndexByte(v, 0)
	if i < 0 {
		return nil, nil
	}
	tail := v[i+1:]
	if len(tail)%identitySize != 0 {
		return nil, fmt.Errorf("applied identities of %d bytes, not a multiple of %d", len(tail), identitySize)
	}
	ids := make([]identity, len(tail)/identitySize)
	for n := range ids {
		ids[n] = identity(tail[n*identitySize:])
	}
	return ids, nil
}

// encodeRow returns the transfers value of canonical JSON js and the
// identities ids, which it sorts.
func encodeRow(js []byte, ids []identity) []byte {
	slices.SortFunc(ids, func(a, b identity) int { return bytes.Compare(a[:], b[:]) })
	v := make([]byte, 0, len(js)+1+identitySize*len(ids))
	v = append(append(v, js...), 0)
	for _, id := range ids {
		v = append(v, id[:]...)
	}
	return v
}

// hasIdentity reports whether the ascending ids hold id.
func hasIdentity(ids []identity, id identity) bool {
	_, ok := slices.BinarySearchFunc(ids, id, func(a, b identity) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// indexPrefix is the part of an index key before the row.
func indexPrefix(value string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(value)+8), uint64(len(value)))
	return append(k, value...)
}

// tenantPrefix is the part of a tenant-keyed index key before the row.
func tenantPrefix(value, issuer string) []byte {
	return append(indexPrefix(value), indexPrefix(issuer)...)
}

// rowed is the index key prefix ‖ row.
func rowed(prefix string, row uint64) []byte {
	k := make([]byte, 0, len(prefix)+8)
	return binary.BigEndian.AppendUint64(append(k, prefix...), row)
}

// cutEntry splits len ‖ value ‖ row: an index key, or what follows the
// value's prefix in a tenant-keyed one (len ‖ issuer ‖ row). ok is false
// for anything else.
func cutEntry(k []byte) (value string, row uint64, ok bool) {
	n, w := binary.Uvarint(k)
	if w <= 0 || n > uint64(len(k)) || uint64(len(k)-w) != n+8 {
		return "", 0, false
	}
	return string(k[w : w+int(n)]), binary.BigEndian.Uint64(k[w+int(n):]), true
}

// edgeDown is the lineage key linking an original to one of its re-runs;
// edgesDown(original) is the prefix of all of them.
func edgeDown(original, rerun string) []byte {
	return append(edgesDown(original), rerun...)
}

func edgesDown(original string) []byte {
	k := make([]byte, 0, 2+len(original)+40)
	k = append(k, 'o')
	k = append(k, original...)
	return append(k, 0)
}

// edgeUp is the lineage key of a re-run; its value is the original.
func edgeUp(rerun string) []byte { return append([]byte{'r'}, rerun...) }
