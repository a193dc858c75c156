package ingest

import "sync"

// ownerCache remembers which issuer owns a transfer. A binding never
// changes once made, so a cached owner is always right; the cache only
// spares the journal a round trip per event. When full it forgets an
// arbitrary half.
type ownerCache struct {
	mu  sync.RWMutex
	m   map[string]string
	max int
}

func newOwnerCache(max int) *ownerCache {
	return &ownerCache{m: make(map[string]string), max: max}
}

func (c *ownerCache) get(transferID string) (string, bool) {
	c.mu.RLock()
	owner, ok := c.m[transferID]
	c.mu.RUnlock()
	return owner, ok
}

func (c *ownerCache) put(transferID, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		n := 0
		for k := range c.m {
			if n >= c.max/2 {
				break
			}
			delete(c.m, k)
			n++
		}
	}
	c.m[transferID] = owner
}
