package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/transferd/transferd/engine/journal"
)

// Rebuild builds a fresh store for path from the whole MIGRATIONS stream
// (up to its last sequence when Rebuild starts) in a temporary file next to
// it, syncs it, and renames it over path atomically: readers of path see
// the old store or the new one, never a mixture. progress, when not nil, is
// called after each batch with the sequences done and the total.
//
// Rebuild refuses (ErrLocked) while anything has path open for writing,
// such as a running transferd; it keeps other writers out until the rename
// by holding a shared lock on the old file.
//
// The feed is not published by Rebuild. Transfers changed by events after
// the old store's checkpoint, and those the old store had not yet
// published, are left in the new store's outbox, so that the next
// projector publishes them; when the old store is missing, unreadable,
// torn (ErrUnsynced) or ahead of the stream, every transfer is (JetStream's
// duplicate window and the consumers' idempotence on transferId:version
// absorb the repetition).
func Rebuild(ctx context.Context, j *journal.Journal, path string, progress func(done, total uint64)) error {
	old, err := openOld(path)
	if err != nil {
		return err
	}
	defer old.close()

	tmp, err := tempPath(path, "rebuild")
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op after the rename
	if err := build(ctx, j, tmp, 0, old.checkpoint, progress); err != nil {
		return err
	}
	if err := carryOutbox(tmp, old.outbox); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	// The old file's mark, if it had one (ErrUnsynced): the new file is
	// synced.
	return clearUnsynced(path)
}

// oldStore is what Rebuild keeps of the store it replaces.
type oldStore struct {
	db         *bolt.DB // holds the shared lock; nil when there is no readable file
	checkpoint uint64
	outbox     []string // transfer ids not yet published
}

func (o *oldStore) close() {
	if o.db != nil {
		o.db.Close()
	}
}

// openOld takes a shared lock on the store at path, if there is one, and
// reads its checkpoint and unpublished transfers. The meta bucket's
// checkpoint key means the same in every schema version; the outbox is
// read only from a version whose outbox this one understands (all so far).
func openOld(path string) (*oldStore, error) {
	o := &oldStore{}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	torn := errors.Is(checkUnsynced(path), ErrUnsynced)
	// Opening read-only reads the meta pages alone, which a torn file may
	// have whole; it takes the lock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case err != nil:
		return o, nil // unreadable: replaced, everything republished
	}
	o.db = db
	if torn {
		return o, nil // not to be read: replaced, everything republished
	}
	_ = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		o.checkpoint = getU64(meta.Get(metaCheckpoint))
		out, rows := tx.Bucket(bucketOutbox), tx.Bucket(bucketTransfers)
		if v := getU64(meta.Get(metaSchema)); v == 0 || v > schemaVersion || out == nil || rows == nil {
			return nil
		}
		return out.ForEach(func(k, _ []byte) error {
			var t struct {
				TransferID string `json:"transferId"`
			}
			if json.Unmarshal(rowJSON(rows.Get(k)), &t) == nil && t.TransferID != "" {
				o.outbox = append(o.outbox, t.TransferID)
			}
			return nil
		})
	})
	return o, nil
}

// build projects the stream up to until (0: its end now) into a new file
// at path, without fsyncs until the end, and closes it synced.
func build(ctx context.Context, j *journal.Journal, path string, until, outboxAfter uint64, progress func(done, total uint64)) error {
	s, err := Open(path, Options{noSync: true})
	if err != nil {
		return err
	}
	defer s.Close()
	if until == 0 {
		if until, err = j.LastSeq(ctx); err != nil {
			return fmt.Errorf("projections: rebuild: %w", err)
		}
	}
	if outboxAfter > until {
		// The old store is ahead of the stream (a power cut lost events it
		// had folded): the transfers those events changed, and whose
		// states the feed may have published, are not known, so all go
		// to the outbox.
		outboxAfter = 0
	}
	opts := ProjectorOptions{MaxBatch: rebuildMaxBatch, runEvents: rebuildRunEvents, NoPublish: true, outboxAfter: outboxAfter, release: true}
	if progress != nil {
		progress(0, until)
		opts.progress = func(cp uint64) { progress(cp, until) }
	}
	if err := catchUpTo(ctx, j, s, until, opts); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("projections: rebuild: sync: %w", err)
	}
	return s.Close()
}

// carryOutbox adds the transfers the old store had not published to the
// new store's outbox.
func carryOutbox(path string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	s, err := Open(path, Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.update(func(tx *bolt.Tx) error {
		out := tx.Bucket(bucketOutbox)
		for _, id := range ids {
			row, ok := rowOf(tx, id)
			if !ok || out.Get(rowKey(row)) != nil {
				continue
			}
			t, err := loadRow(tx, row)
			if err != nil {
				return err
			}
			if err := out.Put(rowKey(row), u64(uint64(t.Version))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("projections: rebuild: carry the outbox over: %w", err)
	}
	return s.Close()
}

func tempPath(path, what string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+"."+what+"-*")
	if err != nil {
		return "", fmt.Errorf("projections: %s: %w", what, err)
	}
	name := f.Name()
	f.Close()
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("projections: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("projections: sync %s: %w", dir, err)
	}
	return nil
}

// Diff is one difference between a live store and its rebuild.
type Diff struct {
	// Bucket is where the difference is (see the schema in schema.go):
	// "transfers" for a transfer's state and applied identities, or an
	// index, "lineage", "ids" or "meta".
	Bucket string
	// Key is the entry's key in Bucket.
	Key []byte
	// TransferID names the transfer for "transfers" and "ids" entries.
	TransferID string
	// Live and Rebuilt are the entry's value in each store; nil where the
	// entry is missing.
	Live, Rebuilt []byte
}

// String describes the difference on one line, readably (see Text).
func (d Diff) String() string {
	return fmt.Sprintf("%s %s: live %s, rebuilt %s", d.Bucket, d.Name(), d.Text(d.Live), d.Text(d.Rebuilt))
}

// Name is what the difference is about: the transfer id, or the key.
func (d Diff) Name() string {
	if d.TransferID != "" {
		return d.TransferID
	}
	return printable(d.Key)
}

// Text renders one of d's values for a terminal: "(missing)" for nil, a
// counter or sequence of the meta bucket as a number, JSON and other
// printable text as it is, anything else quoted with escapes, so that no
// raw bytes reach the terminal.
func (d Diff) Text(v []byte) string {
	switch {
	case v == nil:
		return "(missing)"
	case d.Bucket == string(bucketMeta) && len(v) == 8:
		return strconv.FormatUint(getU64(v), 10)
	case d.Bucket == string(bucketTransfers):
		js := rowJSON(v)
		if len(js) == len(v) {
			break
		}
		ids, err := rowIdentities(v)
		if err != nil {
			return printable(js) + " (" + err.Error() + ")"
		}
		return fmt.Sprintf("%s (%d applied identities: %x)", printable(js), len(ids), v[len(js)+1:])
	}
	return printable(v)
}

// printable returns b as it is when it is printable UTF-8, else quoted.
func printable(b []byte) string {
	if utf8.Valid(b) && !bytes.ContainsFunc(b, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

// zeroCounter reports whether k, v is a meta counter at zero, which is the
// same as no counter: stores written before zero counters were deleted
// still have some.
func zeroCounter(bucket, k, v []byte) bool {
	return bytes.Equal(bucket, bucketMeta) && bytes.HasPrefix(k, []byte("count.")) && len(v) == 8 && getU64(v) == 0
}

// MaxDiffs bounds the differences Verify reports.
const MaxDiffs = 1000

// Verify rebuilds the store at livePath from the stream, up to the live
// store's checkpoint, into a temporary file, and compares the two entry by
// entry: every transfer byte for byte (its applied identities too), the ids,
// indexes, lineage and counters (not the outbox, which depends on what
// the feed has published). It returns the differences, at most MaxDiffs;
// none means the live store is exactly what the stream says. The live file
// is opened read-only, which fails (ErrLocked) while a projector writes
// it; use VerifyStore from inside that process. A store of an older
// schema is not compared (ErrOldSchema): it is rebuilt, not verified.
// progress is as for Rebuild.
func Verify(ctx context.Context, j *journal.Journal, livePath string, progress func(done, total uint64)) ([]Diff, error) {
	live, err := Open(livePath, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer live.Close()
	return verify(ctx, j, live, progress)
}

// VerifyStore is Verify for a store in use: it compares a snapshot of s
// (copied in one read transaction) with the rebuild.
func VerifyStore(ctx context.Context, j *journal.Journal, s *Store, progress func(done, total uint64)) ([]Diff, error) {
	snap, err := tempPath(s.path, "snapshot")
	if err != nil {
		return nil, err
	}
	defer os.Remove(snap)
	if err := s.view(func(tx *bolt.Tx) error { return tx.CopyFile(snap, 0o600) }); err != nil {
		return nil, fmt.Errorf("projections: verify: snapshot: %w", err)
	}
	live, err := Open(snap, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer live.Close()
	return verify(ctx, j, live, progress)
}

func verify(ctx context.Context, j *journal.Journal, live *Store, progress func(done, total uint64)) ([]Diff, error) {
	tmp, err := tempPath(live.path, "verify")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	cp := live.Checkpoint()
	if cp > 0 {
		if err := build(ctx, j, tmp, cp, cp, progress); err != nil {
			return nil, err
		}
	}
	rebuilt, err := Open(tmp, Options{ReadOnly: cp > 0})
	if err != nil {
		return nil, err
	}
	defer rebuilt.Close()
	var diffs []Diff
	err = live.view(func(ltx *bolt.Tx) error {
		return rebuilt.view(func(rtx *bolt.Tx) error {
			diffs = compare(ltx, rtx)
			return nil
		})
	})
	return diffs, err
}

// compare lists the differences between two stores, bucket by bucket.
func compare(live, rebuilt *bolt.Tx) []Diff {
	var diffs []Diff
	for _, name := range buckets {
		if bytes.Equal(name, bucketOutbox) {
			continue
		}
		lc, rc := cursor(live, name), cursor(rebuilt, name)
		lk, lv := lc.First()
		rk, rv := rc.First()
		for (lk != nil || rk != nil) && len(diffs) < MaxDiffs {
			if lk != nil && zeroCounter(name, lk, lv) && !bytes.Equal(lk, rk) {
				lk, lv = lc.Next()
				continue
			}
			if rk != nil && zeroCounter(name, rk, rv) && !bytes.Equal(lk, rk) {
				rk, rv = rc.Next()
				continue
			}
			d := Diff{Bucket: string(name)}
			switch c := compareKeys(lk, rk); {
			case c == 0:
				if !bytes.Equal(lv, rv) {
					d.Key, d.Live, d.Rebuilt = bytes.Clone(lk), bytes.Clone(lv), bytes.Clone(rv)
					diffs = append(diffs, d)
				}
				lk, lv = lc.Next()
				rk, rv = rc.Next()
				continue
			case c < 0:
				d.Key, d.Live = bytes.Clone(lk), bytes.Clone(lv)
				lk, lv = lc.Next()
			default:
				d.Key, d.Rebuilt = bytes.Clone(rk), bytes.Clone(rv)
				rk, rv = rc.Next()
			}
			diffs = append(diffs, d)
		}
	}
	for i := range diffs {
		diffs[i].TransferID = diffTransferID(diffs[i])
	}
	return diffs
}

// cursor is a cursor over tx's bucket name, an empty one when the file
// lacks that (optional) bucket.
func cursor(tx *bolt.Tx, name []byte) interface {
	First() ([]byte, []byte)
	Next() ([]byte, []byte)
} {
	if b := tx.Bucket(name); b != nil {
		return b.Cursor()
	}
	return emptyCursor{}
}

type emptyCursor struct{}

func (emptyCursor) First() ([]byte, []byte) { return nil, nil }
func (emptyCursor) Next() ([]byte, []byte)  { return nil, nil }

// compareKeys orders keys, a nil key (an exhausted cursor) last.
func compareKeys(a, b []byte) int {
	switch {
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

func diffTransferID(d Diff) string {
	switch d.Bucket {
	case string(bucketIDs):
		return string(d.Key)
	case string(bucketTransfers):
		for _, b := range [][]byte{d.Live, d.Rebuilt} {
			var t struct {
				TransferID string `json:"transferId"`
			}
			if json.Unmarshal(rowJSON(b), &t) == nil && t.TransferID != "" {
				return t.TransferID
			}
		}
	}
	return ""
}
