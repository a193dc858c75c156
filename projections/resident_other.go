//go:build !linux

package projections

// release is a no-op where madvise is not used (see resident_linux.go).
func (s *Store) release(size, step int64) int64 { return size }
