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
//
// It releases only once the file has grown by step since size, its size
// at the last release (0 for none), and returns the size it released at,
// or size. Pages faulted back in cost CPU: releasing after every batch
// made a rebuild of 175,000 events a sixth slower in one comparison (not
// in another: the machine is noisy). Every 8 MiB of growth keeps the
// mapped share of the resident set within about that much plus what a
// batch reads.
func (s *Store) release(size, step int64) int64 {
	_ = s.db.View(func(tx *bolt.Tx) error {
		data, now := s.db.Info().Data, tx.Size()
		if data == 0 || now < size+step {
			return nil
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(now), syscall.MADV_DONTNEED)
		size = now
		return nil
	})
	return size
}
