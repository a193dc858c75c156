package projections_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine/journal/journaltest"
	"github.com/transferd/transferd/projections"
)

// downgradeToV1 rewrites the store at path to schema version 1, whose
// by_migration and by_cloud keys were len ‖ value ‖ row (no issuer).
func downgradeToV1(tb testing.TB, path string) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"by_migration", "by_cloud"} {
			var keys [][]byte
			if err := tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
				n, w := binary.Uvarint(k)
				value := k[w : w+int(n)]
				rest := k[w+int(n):]
				m, w2 := binary.Uvarint(rest)
				row := rest[w2+int(m):]
				key := binary.AppendUvarint(nil, n)
				keys = append(keys, append(append(key, value...), row...))
				return nil
			}); err != nil {
				return err
			}
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := b.Put(k, []byte{}); err != nil {
					return err
				}
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// A store written with schema version 1 (indexes by migration and site not
// keyed by tenant) keeps working: a read-only Open refuses it, Verify
// compares a migrated copy and leaves the file alone, Open for writing
// migrates it to exactly what the projector writes, and lists by migration
// stay inside one tenant.
func TestOpenMigratesSchema1(t *testing.T) {
	j := journaltest.Open(t)
	appendFast(t, j, generate(13, 1500))
	path := filepath.Join(t.TempDir(), "projections.db")
	s := mustOpen(t, path)
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	all := folded(t, j)
	var mig string
	for _, id := range sortedKeys(all) {
		if m := all[id].Migration.MigrationID; mig == "" || m < mig {
			mig = m
		}
	}
	want, err := s.List(projections.Filter{MigrationID: mig, Limit: projections.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.OtherTenants) == 0 {
		t.Fatalf("migration %s has one tenant; pick a better one", mig)
	}
	s.Close()
	downgradeToV1(t, path)
	before := fileBytes(t, path)

	if _, err := projections.Open(path, projections.Options{ReadOnly: true}); !errors.Is(err, projections.ErrSchema) {
		t.Errorf("read-only Open of schema 1: %v, want ErrSchema", err)
	}
	diffs, err := projections.Verify(testContext(t), j, path, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("Verify of a schema 1 store: %v, %v", diffs, err)
	}
	if !bytes.Equal(fileBytes(t, path), before) {
		t.Error("Verify changed the schema 1 file")
	}

	s = mustOpen(t, path)
	got, err := s.List(projections.Filter{MigrationID: mig, Limit: projections.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got.Transfers), ids(want.Transfers)) || got.Tenant != want.Tenant ||
		!slices.Equal(got.OtherTenants, want.OtherTenants) {
		t.Errorf("after migrating: %s %v %v, want %s %v %v", got.Tenant, got.OtherTenants, ids(got.Transfers),
			want.Tenant, want.OtherTenants, ids(want.Transfers))
	}
	for _, tr := range got.Transfers {
		if tr.Issuer != got.Tenant {
			t.Errorf("migration %s of %s lists %s of %s", mig, got.Tenant, tr.TransferID, tr.Issuer)
		}
	}
	// The projector goes on from the migrated file, and a rebuild agrees.
	appendFast(t, j, generate(14, 300))
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	assertMatchesFold(t, j, s)
	diffs, err = projections.VerifyStore(testContext(t), j, s, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("VerifyStore after migrating: %v, %v", diffs, err)
	}
}

func fileBytes(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
