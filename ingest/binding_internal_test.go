package ingest

import (
	"fmt"
	"testing"
)

// TestOwnerCache: a cached owner is the one put for that transfer and no
// other's; a full cache forgets about half and keeps answering right for
// what it kept.
func TestOwnerCache(t *testing.T) {
	const max = 1000
	c := newOwnerCache(max)
	owner := func(i int) string { return fmt.Sprintf("connect:tenant-%d", i%7) }
	id := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i*2654435761, i) }
	for i := range max {
		c.put(id(i), owner(i))
	}
	for i := range max {
		if got, ok := c.get(id(i)); !ok || got != owner(i) {
			t.Fatalf("get(%s) = %q, %v; want %q", id(i), got, ok, owner(i))
		}
	}
	if _, ok := c.get(id(max)); ok {
		t.Fatalf("get of a transfer never put found an owner")
	}
	c.put(id(0), owner(0)) // again: not a new entry, nothing forgotten
	if len(c.m) != max {
		t.Fatalf("putting a known transfer again changed the size to %d", len(c.m))
	}
	for i := max; i < 3*max; i++ {
		c.put(id(i), owner(i))
		if len(c.m) > max {
			t.Fatalf("cache holds %d transfers, max %d", len(c.m), max)
		}
	}
	kept := 0
	for i := range 3 * max {
		got, ok := c.get(id(i))
		if !ok {
			continue
		}
		kept++
		if got != owner(i) {
			t.Fatalf("after evictions get(%s) = %q, want %q", id(i), got, owner(i))
		}
	}
	if kept < max/2 || kept > max {
		t.Fatalf("a full cache kept %d of %d transfers", kept, max)
	}
}
