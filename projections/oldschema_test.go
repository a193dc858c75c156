package projections_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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
// by_migration and by_cloud keys were len ‖ value ‖ row (no issuer) and
// whose transfers had no triggeredAt.
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
		rows := tx.Bucket([]byte("transfers"))
		var old [][2][]byte
		if err := rows.ForEach(func(k, v []byte) error {
			var m map[string]json.RawMessage
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i] // schema 1 kept the applied identities in a bucket of their own
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			delete(m, "triggeredAt")
			b, err := json.Marshal(m)
			old = append(old, [2][]byte{slices.Clone(k), b})
			return err
		}); err != nil {
			return err
		}
		for _, kv := range old {
			if err := rows.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// A store written with schema version 1 (indexes by migration and site not
// keyed by tenant, transfers without triggeredAt) is rebuilt, not migrated:
// no Open and no Verify touches it or compares it (either would report a
// difference for every triggered transfer), Rebuild replaces it with what
// the projector writes, and lists by migration then stay inside one
// tenant. transferd serve does the rebuild by itself (TestServeRebuildsAnOldProjection).
func TestOldSchemaIsRebuilt(t *testing.T) {
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

	for _, ro := range []bool{true, false} {
		if _, err := projections.Open(path, projections.Options{ReadOnly: ro}); !errors.Is(err, projections.ErrOldSchema) || !errors.Is(err, projections.ErrSchema) {
			t.Errorf("Open (read-only %v) of schema 1: %v, want ErrOldSchema", ro, err)
		}
	}
	if diffs, err := projections.Verify(testContext(t), j, path, nil); !errors.Is(err, projections.ErrOldSchema) {
		t.Fatalf("Verify of a schema 1 store: %v, %v; want ErrOldSchema", diffs, err)
	}
	if !bytes.Equal(fileBytes(t, path), before) {
		t.Error("Open or Verify changed the schema 1 file")
	}

	if err := projections.Rebuild(testContext(t), j, path, nil); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	got, err := s.List(projections.Filter{MigrationID: mig, Limit: projections.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got.Transfers), ids(want.Transfers)) || got.Tenant != want.Tenant ||
		!slices.Equal(got.OtherTenants, want.OtherTenants) {
		t.Errorf("after the rebuild: %s %v %v, want %s %v %v", got.Tenant, got.OtherTenants, ids(got.Transfers),
			want.Tenant, want.OtherTenants, ids(want.Transfers))
	}
	triggered := 0
	for _, tr := range got.Transfers {
		if tr.Issuer != got.Tenant {
			t.Errorf("migration %s of %s lists %s of %s", mig, got.Tenant, tr.TransferID, tr.Issuer)
		}
		if tr.TriggeredAt != nil {
			triggered++
		}
	}
	if triggered == 0 {
		t.Error("no transfer of the rebuilt store has triggeredAt; the rebuild did not refold")
	}
	// The projector goes on from the rebuilt file, and a rebuild agrees.
	appendFast(t, j, generate(14, 300))
	mustCatchUp(t, j, s, projections.ProjectorOptions{NoPublish: true})
	assertMatchesFold(t, j, s)
	diffs, err := projections.VerifyStore(testContext(t), j, s, nil)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("VerifyStore after the rebuild: %v, %v", diffs, err)
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
