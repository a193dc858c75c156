package projections

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// release tells the kernel that this process need not keep the store's
// mapped pages resident: bbolt maps the whole file, and every page a fold
// reads stays in the process's resident set, so that a rebuild's RSS grew
// with the file (580 MB for a million events, 380 MB of it the file). The
// pages stay in the page cache, shared and reclaimable; a later read
// faults them back in from there. The file is mapped shared and read-only
// (bbolt writes with pwrite), so dropping the mapping's pages loses
// nothing (MADV_DONTNEED on a shared file mapping only unmaps them). The
// range is what the read transaction sees as the database's size, which
// bbolt's mapping always covers, and the mapping cannot move while the
// transaction is open.
func (s *Store) release() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		data, size := s.db.Info().Data, tx.Size()
		if data == 0 || size <= 0 {
			return nil
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED)
		return nil
	})
}
