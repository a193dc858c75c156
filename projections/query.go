package projections

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"

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
		b = bytes.Clone(rowJSON(tx.Bucket(bucketTransfers).Get(rowKey(row))))
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
	t, err := engine.UnmarshalTransfer(rowJSON(b))
	if err != nil {
		return nil, fmt.Errorf("projections: transfer at row %d: %w", row, err)
	}
	return t, nil
}

// Filter selects transfers for List. Empty fields match everything; set
// fields must all match, except that a listing by MigrationID or CloudURL
// stays inside one tenant (see List).
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
	// Tenant and OtherTenants are set for a listing by migration id or
	// cloud URL: the tenant listed (Filter.Tenant when set, else the
	// issuer of the oldest transfer filed under the id or URL; empty when
	// there is none), and the other issuers filed under it, sorted.
	Tenant       string
	OtherTenants []string
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
// Tenants. A listing by MigrationID or CloudURL (the migration id when
// both are set) lists one tenant's transfers: Filter.Tenant, else the
// default tenant, the issuer of the oldest transfer filed under the id
// or URL, as Migration does; Page.Tenant and Page.OtherTenants say which
// and who else uses it. The default can change between pages only if
// that oldest transfer changes its migration; a client paging without a
// tenant pins Page.Tenant of the first page. Other listings span every
// tenant unless Filter.Tenant is set.
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
		tenant := f.Tenant
		if ix, value := f.keyed(); ix != nil {
			var ok bool
			page.Tenant, page.OtherTenants, ok = tenancy(tx.Bucket(ix.bucket), value, f.Tenant)
			if !ok {
				return nil
			}
			tenant = page.Tenant
		}
		rows := scanRows(tx, f, tenant, before)
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

// keyed returns the tenant-keyed index a listing by f reads and the value
// it reads, or nil.
func (f Filter) keyed() (*index, string) {
	switch {
	case f.MigrationID != "":
		return &indexMigration, f.MigrationID
	case f.CloudURL != "":
		return &indexCloud, f.CloudURL
	}
	return nil, ""
}

// tenancy resolves the tenant a listing of value in the tenant-keyed index
// b shows (want, else the issuer of the oldest entry) and the others; ok
// is false when want is empty and value has no entry.
func tenancy(b *bolt.Bucket, value, want string) (tenant string, others []string, ok bool) {
	tenants, oldest := tenantsOf(b, value)
	if want == "" {
		if len(tenants) == 0 {
			return "", nil, false
		}
		want = oldest
	}
	for _, t := range tenants {
		if t != want {
			others = append(others, t)
		}
	}
	slices.Sort(others)
	return want, others, true
}

// tenantsOf lists the issuers filed under value in the tenant-keyed index
// b, one seek per issuer, and the one whose entry has the smallest row.
func tenantsOf(b *bolt.Bucket, value string) (tenants []string, oldest string) {
	prefix := indexPrefix(value)
	c := b.Cursor()
	first := uint64(1<<64 - 1)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); {
		issuer, row, ok := cutEntry(k[len(prefix):])
		if !ok {
			k, _ = c.Next()
			continue
		}
		tenants = append(tenants, issuer)
		if row < first { // each issuer's first entry is its oldest
			first, oldest = row, issuer
		}
		// Past the issuer's last entry: its prefix ‖ the largest row.
		k, _ = c.Seek(binary.BigEndian.AppendUint64(tenantPrefix(value, issuer), 1<<64-1))
		if k != nil && bytes.HasPrefix(k, tenantPrefix(value, issuer)) {
			k, _ = c.Next()
		}
	}
	return tenants, oldest
}

// scanRows returns an iterator over candidate rows below before, newest
// first, from the most selective index the filter names (the caller still
// checks every condition on the transfer itself). A listing by migration
// id or cloud URL reads only tenant's entries.
func scanRows(tx *bolt.Tx, f Filter, tenant string, before uint64) func() (uint64, bool) {
	if ix, value := f.keyed(); ix != nil {
		return descending(tx.Bucket(ix.bucket).Cursor(), tenantPrefix(value, tenant), before)
	}
	var ix *index
	var value string
	switch {
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

// Migration returns one tenant's transfers of migration id, oldest first
// (by their first event in the stream): tenant's, or when tenant is empty
// those of the issuer of the migration's oldest transfer. Page.Tenant
// names the tenant and Page.OtherTenants the other issuers with
// transfers of that id; Page.NextCursor is empty. ErrNotFound when the
// tenant has no transfer of the migration.
func (s *Store) Migration(id, tenant string) (Page, error) {
	var page Page
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketByMigration)
		var ok bool
		if page.Tenant, page.OtherTenants, ok = tenancy(b, id, tenant); !ok {
			return nil
		}
		prefix := tenantPrefix(id, page.Tenant)
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			t, err := loadRow(tx, binary.BigEndian.Uint64(k[len(prefix):]))
			if err != nil {
				return err
			}
			page.Transfers = append(page.Transfers, t)
		}
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	if len(page.Transfers) == 0 || id == "" {
		if tenant != "" {
			return Page{}, fmt.Errorf("%w: migration %s of tenant %s", ErrNotFound, id, tenant)
		}
		return Page{}, fmt.Errorf("%w: migration %s", ErrNotFound, id)
	}
	return page, nil
}
