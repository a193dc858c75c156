package projections

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// Transfer returns the transfer id as folded from every event up to the
// checkpoint, or ErrNotFound.
func (s *Store) Transfer(id string) (*engine.Transfer, error) {
	var t *engine.Transfer
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		t, err = loadByID(tx, id)
		return err
	})
	return t, err
}

// TransferJSON returns the stored canonical JSON of transfer id
// (engine.Transfer.MarshalCanonical), or ErrNotFound.
func (s *Store) TransferJSON(id string) ([]byte, error) {
	var b []byte
	err := s.view(func(tx *bolt.Tx) error {
		row, ok := rowOf(tx, id)
		if !ok {
			return fmt.Errorf("%w: transfer %s", ErrNotFound, id)
		}
		b = bytes.Clone(tx.Bucket(bucketTransfers).Get(rowKey(row)))
		return nil
	})
	return b, err
}

// rowOf returns transfer id's row.
func rowOf(tx *bolt.Tx, id string) (uint64, bool) {
	v := tx.Bucket(bucketIDs).Get([]byte(id))
	return getU64(v), v != nil
}

func loadByID(tx *bolt.Tx, id string) (*engine.Transfer, error) {
	row, ok := rowOf(tx, id)
	if !ok {
		return nil, fmt.Errorf("%w: transfer %s", ErrNotFound, id)
	}
	return loadRow(tx, row)
}

// loadRow decodes the transfer at row; UnmarshalTransfer copies everything
// it keeps out of bbolt's memory.
func loadRow(tx *bolt.Tx, row uint64) (*engine.Transfer, error) {
	b := tx.Bucket(bucketTransfers).Get(rowKey(row))
	if b == nil {
		return nil, fmt.Errorf("projections: row %d has no transfer", row)
	}
	t, err := engine.UnmarshalTransfer(b)
	if err != nil {
		return nil, fmt.Errorf("projections: transfer at row %d: %w", row, err)
	}
	return t, nil
}

// Filter selects transfers for List. Empty fields match everything; set
// fields must all match.
type Filter struct {
	MigrationID string
	CloudURL    string
	// Tenant is the transfer's issuer: a Connect clientKey or a Forge
	// installation id.
	Tenant string
	Phase  engine.Phase
	// NeedsAction, when set, keeps only transfers that need (true) or do
	// not need (false) the partner to act.
	NeedsAction *bool
	// Limit is the page size: DefaultLimit when zero, at most MaxLimit.
	Limit int
	// Cursor continues a listing: Page.NextCursor of the previous page.
	Cursor string
}

// Page sizes for List.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Page is one page of a listing.
type Page struct {
	Transfers []*engine.Transfer
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
}

// List returns the transfers matching f, newest first, one page at a time.
//
// Order and cursors. "Newest" means most recently created: transfers are
// ordered by their row, the stream sequence of the first event seen for
// them, descending. A transfer's row never changes, so the order is a
// fixed total order over all transfers that only ever grows at the front.
// A cursor is an opaque encoding of the last row returned, and the next
// page continues strictly below it. Hence, under concurrent writes:
//   - no transfer is returned twice in one traversal, and none that existed
//     when the first page was read and still matches the filter is
//     skipped, however often transfers change between pages;
//   - transfers created after the first page was read sort in front of it
//     and appear in the next traversal (poll from the top with no cursor);
//   - a transfer whose phase, needsAction, tenant, site or migration
//     changes between pages is returned if it matches when its position is
//     read.
//
// Ordering by last activity (lastReceivedAt) instead would move a
// transfer to the front every time it changes, past a cursor that has
// already gone by, and no cursor could promise the above; clients that
// want activity order sort a page by lastReceivedAt themselves.
//
// A cursor does not depend on the filter, so it stays valid if the
// filter changes. Cursors that List did not produce are ErrInvalidCursor;
// an unknown phase is ErrInvalidFilter.
func (s *Store) List(f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	before := uint64(1<<64 - 1)
	if f.Cursor != "" {
		row, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		before = row
	}
	if f.Phase != "" && !f.Phase.Valid() {
		return Page{}, fmt.Errorf("%w: unknown phase %q", ErrInvalidFilter, f.Phase)
	}
	var page Page
	err := s.view(func(tx *bolt.Tx) error {
		rows := scanRows(tx, f, before)
		var last uint64
		for row, ok := rows(); ok; row, ok = rows() {
			t, err := loadRow(tx, row)
			if err != nil {
				return err
			}
			if !f.matches(t) {
				continue
			}
			if len(page.Transfers) == limit {
				page.NextCursor = encodeCursor(last)
				return nil
			}
			page.Transfers = append(page.Transfers, t)
			last = row
		}
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	if page.Transfers == nil {
		page.Transfers = []*engine.Transfer{}
	}
	return page, nil
}

func (f Filter) matches(t *engine.Transfer) bool {
	var mig, cloud string
	if t.Migration != nil {
		mig, cloud = t.Migration.MigrationID, t.Migration.CloudURL
	}
	switch {
	case f.MigrationID != "" && f.MigrationID != mig,
		f.CloudURL != "" && f.CloudURL != cloud,
		f.Tenant != "" && f.Tenant != t.Issuer,
		f.Phase != "" && f.Phase != t.Phase,
		f.NeedsAction != nil && *f.NeedsAction != (t.NeedsAction() != ""):
		return false
	}
	return true
}

// scanRows returns an iterator over candidate rows below before, newest
// first, from the most selective index the filter names (the caller still
// checks every condition on the transfer itself).
func scanRows(tx *bolt.Tx, f Filter, before uint64) func() (uint64, bool) {
	var ix *index
	var value string
	switch {
	case f.MigrationID != "":
		ix, value = &indexMigration, f.MigrationID
	case f.CloudURL != "":
		ix, value = &indexCloud, f.CloudURL
	case f.Tenant != "":
		ix, value = &indexTenant, f.Tenant
	case f.Phase != "":
		ix, value = &indexPhase, string(f.Phase)
	case f.NeedsAction != nil && *f.NeedsAction:
		ix, value = &indexNeedsAction, "settle"
	}
	if ix == nil {
		return descending(tx.Bucket(bucketTransfers).Cursor(), nil, before)
	}
	return descending(tx.Bucket(ix.bucket).Cursor(), indexPrefix(value), before)
}

// descending iterates the keys prefix ‖ row with row < before, in
// descending row order, yielding the rows.
func descending(c *bolt.Cursor, prefix []byte, before uint64) func() (uint64, bool) {
	var k []byte
	started := false
	return func() (uint64, bool) {
		for {
			if !started {
				started = true
				seek := binary.BigEndian.AppendUint64(bytes.Clone(prefix), before)
				if k, _ = c.Seek(seek); k == nil {
					k, _ = c.Last()
				} else {
					k, _ = c.Prev()
				}
			} else {
				k, _ = c.Prev()
			}
			if k == nil || !bytes.HasPrefix(k, prefix) {
				return 0, false
			}
			if len(k) != len(prefix)+8 {
				continue
			}
			return binary.BigEndian.Uint64(k[len(prefix):]), true
		}
	}
}

// cursorVersion lets the cursor encoding change without misreading old
// cursors.
const cursorVersion = 1

func encodeCursor(row uint64) string {
	b := make([]byte, 9)
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], row)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 9 || b[0] != cursorVersion {
		return 0, fmt.Errorf("%w: %q", ErrInvalidCursor, s)
	}
	return binary.BigEndian.Uint64(b[1:]), nil
}

// Migration returns the transfers of migration id, oldest first (by their
// first event in the stream), or ErrNotFound when it has none.
func (s *Store) Migration(id string) ([]*engine.Transfer, error) {
	var ts []*engine.Transfer
	err := s.view(func(tx *bolt.Tx) error {
		prefix := indexPrefix(id)
		c := tx.Bucket(bucketByMigration).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			t, err := loadRow(tx, binary.BigEndian.Uint64(k[len(prefix):]))
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 || id == "" {
		return nil, fmt.Errorf("%w: migration %s", ErrNotFound, id)
	}
	return ts, nil
}
