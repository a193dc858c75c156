package projections

import bolt "go.etcd.io/bbolt"

// CompareStores compares two stores as Verify compares a live store with
// its rebuild.
func CompareStores(a, b *Store) ([]Diff, error) {
	var diffs []Diff
	err := a.view(func(atx *bolt.Tx) error {
		return b.view(func(btx *bolt.Tx) error {
			diffs = compare(atx, btx)
			return nil
		})
	})
	return diffs, err
}

// Outbox returns the store's outbox as row → version.
func Outbox(s *Store) map[uint64]uint64 {
	out := map[uint64]uint64{}
	_ = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			out[getU64(k)] = getU64(v)
			return nil
		})
	})
	return out
}

// Applied returns the store's applied identities as transferId → event ids.
func Applied(s *Store) map[string][]string {
	out := map[string][]string{}
	_ = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApplied).ForEach(func(k, _ []byte) error {
			t, err := loadRow(tx, getU64(k[:8]))
			if err != nil {
				return err
			}
			out[t.TransferID] = append(out[t.TransferID], string(k[8:]))
			return nil
		})
	})
	return out
}
