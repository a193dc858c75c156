package projections_test

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// firstSeqs returns each transfer's first stream sequence: its place in
// List's newest-first order.
func firstSeqs(tb testing.TB, j *journal.Journal) map[string]uint64 {
	tb.Helper()
	out := map[string]uint64{}
	for env, err := range j.Scan(testContext(tb), "") {
		if err != nil {
			tb.Fatal(err)
		}
		if _, ok := out[env.TransferID]; !ok {
			out[env.TransferID] = env.Seq
		}
	}
	return out
}

// listAll pages through f with small pages.
func listAll(tb testing.TB, s *projections.Store, f projections.Filter) []string {
	tb.Helper()
	return listAllWith(tb, s, f, nil)
}

// listAllWith is listAll calling between(page) after each page but the last.
func listAllWith(tb testing.TB, s *projections.Store, f projections.Filter, between func(page int)) []string {
	tb.Helper()
	var got []string
	for pages := 0; ; pages++ {
		page, err := s.List(f)
		if err != nil {
			tb.Fatalf("List(%+v): %v", f, err)
		}
		if pages > 10000 {
			tb.Fatal("too many pages")
		}
		got = append(got, ids(page.Transfers)...)
		if page.NextCursor == "" {
			return got
		}
		if between != nil {
			between(pages)
		}
		f.Cursor = page.NextCursor
	}
}

// keyTenants returns, for the transfers whose key is value, the issuer of
// the oldest (by first stream sequence) and every other issuer, sorted.
func keyTenants(all map[string]*engine.Transfer, first map[string]uint64, key func(*engine.Transfer) string, value string) (oldest string, others []string) {
	var oldestSeq uint64
	for id, tr := range all {
		if key(tr) == value && (oldestSeq == 0 || first[id] < oldestSeq) {
			oldest, oldestSeq = tr.Issuer, first[id]
		}
	}
	for _, tr := range all {
		if key(tr) == value && tr.Issuer != oldest && !slices.Contains(others, tr.Issuer) {
			others = append(others, tr.Issuer)
		}
	}
	slices.Sort(others)
	return oldest, others
}

func migrationOf(tr *engine.Transfer) string { return tr.Migration.MigrationID }
func cloudOf(tr *engine.Transfer) string     { return tr.Migration.CloudURL }

func TestListFilters(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(6, 3000))
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	all := folded(t, j)
	first := firstSeqs(t, j)

	// Pick filter values that select several transfers.
	var some, needy *engine.Transfer
	for _, id := range sortedKeys(all) {
		tr := all[id]
		if some == nil || tr.Migration.MigrationID < some.Migration.MigrationID {
			some = tr
		}
		if needy == nil && tr.NeedsAction() != "" {
			needy = tr
		}
	}
	// Listings by migration or site stay inside one tenant: the default
	// is the issuer of the oldest transfer filed under the value.
	migTenant, migOthers := keyTenants(all, first, migrationOf, some.Migration.MigrationID)
	siteTenant, siteOthers := keyTenants(all, first, cloudOf, some.Migration.CloudURL)
	needyTenant, _ := keyTenants(all, first, cloudOf, needy.Migration.CloudURL)
	if len(migOthers) == 0 || len(siteOthers) == 0 {
		t.Fatalf("migration %s and site %s each need several tenants; pick better values", some.Migration.MigrationID, some.Migration.CloudURL)
	}
	otherMigTenant, otherSiteTenant := migOthers[len(migOthers)-1], siteOthers[0]
	yes, no := true, false
	tests := []struct {
		name   string
		filter projections.Filter
		match  func(*engine.Transfer) bool
		// For listings by migration or site: the tenant and the others.
		tenant string
		others []string
	}{
		{"all", projections.Filter{}, func(*engine.Transfer) bool { return true }, "", nil},
		{"migration", projections.Filter{MigrationID: some.Migration.MigrationID},
			func(tr *engine.Transfer) bool {
				return tr.Migration.MigrationID == some.Migration.MigrationID && tr.Issuer == migTenant
			}, migTenant, migOthers},
		{"migration of another tenant", projections.Filter{MigrationID: some.Migration.MigrationID, Tenant: otherMigTenant},
			func(tr *engine.Transfer) bool {
				return tr.Migration.MigrationID == some.Migration.MigrationID && tr.Issuer == otherMigTenant
			}, otherMigTenant, othersOf(otherMigTenant, migTenant, migOthers)},
		{"cloud site", projections.Filter{CloudURL: some.Migration.CloudURL},
			func(tr *engine.Transfer) bool {
				return tr.Migration.CloudURL == some.Migration.CloudURL && tr.Issuer == siteTenant
			}, siteTenant, siteOthers},
		{"cloud site of another tenant", projections.Filter{CloudURL: some.Migration.CloudURL, Tenant: otherSiteTenant},
			func(tr *engine.Transfer) bool {
				return tr.Migration.CloudURL == some.Migration.CloudURL && tr.Issuer == otherSiteTenant
			}, otherSiteTenant, nil},
		{"tenant", projections.Filter{Tenant: some.Issuer},
			func(tr *engine.Transfer) bool { return tr.Issuer == some.Issuer }, "", nil},
		{"phase", projections.Filter{Phase: engine.PhaseDataUploaded},
			func(tr *engine.Transfer) bool { return tr.Phase == engine.PhaseDataUploaded }, "", nil},
		{"needs action", projections.Filter{NeedsAction: &yes},
			func(tr *engine.Transfer) bool { return tr.NeedsAction() != "" }, "", nil},
		{"needs no action", projections.Filter{NeedsAction: &no},
			func(tr *engine.Transfer) bool { return tr.NeedsAction() == "" }, "", nil},
		{"tenant and phase", projections.Filter{Tenant: some.Issuer, Phase: engine.PhaseSettled},
			func(tr *engine.Transfer) bool { return tr.Issuer == some.Issuer && tr.Phase == engine.PhaseSettled }, "", nil},
		{"site and needs action", projections.Filter{CloudURL: needy.Migration.CloudURL, NeedsAction: &yes},
			func(tr *engine.Transfer) bool {
				return tr.Migration.CloudURL == needy.Migration.CloudURL && tr.NeedsAction() != "" && tr.Issuer == needyTenant
			}, needyTenant, nil},
		{"unknown migration", projections.Filter{MigrationID: "nope"}, func(*engine.Transfer) bool { return false }, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for id, tr := range all {
				if tc.match(tr) {
					want = append(want, id)
				}
			}
			slices.SortFunc(want, func(a, b string) int { return cmp.Compare(first[b], first[a]) })
			page, err := s.List(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if page.Tenant != tc.tenant || (tc.others != nil && !slices.Equal(page.OtherTenants, tc.others)) {
				t.Errorf("tenant %q, others %v; want %q, %v", page.Tenant, page.OtherTenants, tc.tenant, tc.others)
			}
			for _, limit := range []int{1, 7, 1000} {
				f := tc.filter
				f.Limit = limit
				got := listAll(t, s, f)
				if !slices.Equal(got, want) {
					t.Fatalf("limit %d: got %d transfers %v…, want %d %v…", limit, len(got), head(got), len(want), head(want))
				}
			}
			if tc.name != "unknown migration" && len(want) < 1 {
				t.Errorf("filter selects only %d transfers; pick a better value", len(want))
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

func TestListPageShape(t *testing.T) {
	s := newStore(t)
	page, err := s.List(projections.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Transfers == nil || len(page.Transfers) != 0 || page.NextCursor != "" {
		t.Errorf("empty store: %+v", page)
	}
	for _, f := range []projections.Filter{{Cursor: "garbage"}, {Cursor: "AQ"}, {Cursor: "AgAAAAAAAAAB"}} {
		if _, err := s.List(f); !errors.Is(err, projections.ErrInvalidCursor) {
			t.Errorf("cursor %q: %v, want ErrInvalidCursor", f.Cursor, err)
		}
	}
	if _, err := s.List(projections.Filter{Phase: "sleeping"}); !errors.Is(err, projections.ErrInvalidFilter) {
		t.Errorf("unknown phase: %v, want ErrInvalidFilter", err)
	}
}

// TestListCursorStableUnderWrites pages through the transfers while the
// projector keeps changing them and creating new ones: every transfer that
// existed when paging began is returned exactly once.
func TestListCursorStableUnderWrites(t *testing.T) {
	j := journaltest.Open(t)
	g := newGenerator(7, 64)
	take := func(n int) []*engine.Event {
		out := make([]*engine.Event, n)
		for i := range out {
			out[i] = g.next()
		}
		return out
	}
	appendFast(t, j, take(2000))
	s := newStore(t)
	p, err := projections.Start(testContext(t), j, s, projections.ProjectorOptions{NoPublish: true, MaxBatch: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Stop(); <-p.Closed() }()
	last, _ := j.LastSeq(testContext(t))
	if err := s.Wait(testContext(t), last); err != nil {
		t.Fatal(err)
	}
	before := folded(t, j)
	tenant := "forge-tenant-3"

	// Between pages, every few pages, more events are appended and folded,
	// so the listing runs while the projection moves under it.
	ctx := testContext(t)
	between := func(page int) {
		if page%5 != 0 {
			return
		}
		appendFast(t, j, take(50))
		last, err := j.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, last); err != nil {
			t.Fatal(err)
		}
	}

	for _, f := range []projections.Filter{{Limit: 5}, {Tenant: tenant, Limit: 3}} {
		got := listAllWith(t, s, f, between)
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("filter %+v: transfer %s returned twice", f, id)
			}
			seen[id] = true
		}
		for id, tr := range before {
			if (f.Tenant == "" || tr.Issuer == f.Tenant) && !seen[id] {
				t.Fatalf("filter %+v: transfer %s skipped", f, id)
			}
		}
		// A transfer created since before was taken may lead the first
		// page; one created after the first page sorts before the cursor
		// and never appears on a later page.
		// The second listing starts long after before was taken, so only
		// the first is held to this.
		for i, id := range got {
			if _, ok := before[id]; !ok && i >= f.Limit && f.Tenant == "" {
				t.Fatalf("filter %+v: transfer %s, created after the first page was returned, is on a later page", f, id)
			}
		}
	}
	if s.Checkpoint() == last {
		t.Error("the projector made no progress while paging; the test proves nothing")
	}
}

func TestTransferAndMigration(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(8, 1000))
	s := newStore(t)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	all := folded(t, j)
	first := firstSeqs(t, j)

	if _, err := s.Transfer("no-such-transfer"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("Transfer(unknown): %v, want ErrNotFound", err)
	}
	if _, err := s.Migration("no-such-migration", ""); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("Migration(unknown): %v, want ErrNotFound", err)
	}
	// A migration's transfers, per tenant.
	type key struct{ migration, tenant string }
	byMigration := map[key][]string{}
	for id, tr := range all {
		got, err := s.Transfer(id)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.MarshalCanonical()) != string(tr.MarshalCanonical()) {
			t.Fatalf("Transfer(%s) differs from the fold", id)
		}
		k := key{tr.Migration.MigrationID, tr.Issuer}
		byMigration[k] = append(byMigration[k], id)
	}
	shared := 0
	for k, want := range byMigration {
		slices.SortFunc(want, func(a, b string) int { return cmp.Compare(first[a], first[b]) })
		oldest, others := keyTenants(all, first, migrationOf, k.migration)
		tenants := []string{k.tenant}
		if k.tenant == oldest {
			tenants = append(tenants, "") // the default
		}
		for _, tenant := range tenants {
			got, err := s.Migration(k.migration, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got.Transfers), want) || got.Tenant != k.tenant {
				t.Fatalf("Migration(%s, %q) = %s %v, want %s %v", k.migration, tenant, got.Tenant, ids(got.Transfers), k.tenant, want)
			}
			if wantOthers := othersOf(k.tenant, oldest, others); !slices.Equal(got.OtherTenants, wantOthers) {
				t.Fatalf("Migration(%s, %q): others %v, want %v", k.migration, tenant, got.OtherTenants, wantOthers)
			}
		}
		if len(others) > 0 {
			shared++
		}
	}
	if shared == 0 {
		t.Error("no migration is shared by tenants; the test proves little")
	}
	if _, err := s.Migration(anyKey(byMigration).migration, "no-such-tenant"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("Migration(_, unknown tenant): %v, want ErrNotFound", err)
	}
}

// othersOf is every tenant of a key but tenant, sorted, given the oldest
// tenant and the others.
func othersOf(tenant, oldest string, others []string) []string {
	out := slices.DeleteFunc(append(slices.Clone(others), oldest), func(s string) bool { return s == tenant })
	slices.Sort(out)
	return out
}

func anyKey[K comparable, V any](m map[K]V) K {
	for k := range m {
		return k
	}
	panic("empty map")
}
