package projections

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// errMigratable is why a read-only Open refuses a file of schema 1.
var errMigratable = errors.New("which this version migrates when it opens the file for writing (transferd serve)")

// openMigrated opens a migrated copy of the schema 1 file at path, for
// reading without migrating the file itself (Verify). Closing the store
// does not remove the copy; remove does.
func openMigrated(path string) (s *Store, remove func(), err error) {
	tmp, err := tempPath(path, "migrated")
	if err != nil {
		return nil, nil, err
	}
	remove = func() { os.Remove(tmp) }
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if err != nil {
		remove()
		return nil, nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error { return tx.CopyFile(tmp, 0o600) })
	db.Close()
	if err == nil {
		s, err = Open(tmp, Options{noSync: true})
	}
	if err != nil {
		remove()
		return nil, nil, fmt.Errorf("projections: migrate a copy of %s: %w", path, err)
	}
	return s, remove, nil
}

// migrateV1 brings a file of schema version 1 to the current one in tx: it
// files the by_migration and by_cloud entries (value ‖ row in version 1)
// under their transfer's issuer too, taking each row's issuer from
// by_tenant (a row without an entry there has none). Everything else is
// laid out as in version 1. One transaction: a crash leaves version 1.
func migrateV1(tx *bolt.Tx) error {
	issuers := make(map[uint64]string)
	err := tx.Bucket(bucketByTenant).ForEach(func(k, _ []byte) error {
		if issuer, row, ok := cutEntry(k); ok {
			issuers[row] = issuer
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketByMigration, bucketByCloud} {
		var keys [][]byte
		err := tx.Bucket(name).ForEach(func(k, _ []byte) error {
			value, row, ok := cutEntry(k)
			if !ok {
				return fmt.Errorf("%s: key %q is not value ‖ row", name, k)
			}
			keys = append(keys, rowed(string(tenantPrefix(value, issuers[row])), row))
			return nil
		})
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		b, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		slices.SortFunc(keys, bytes.Compare)
		for _, k := range keys {
			if err := b.Put(k, []byte{}); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, u64(schemaVersion))
}
