package ingest

import (
	"hash/maphash"
	"sync"
	"unique"
)

// ownerCache remembers which owner ("<source>:<issuer>", journal.OwnerOf)
// each transfer has. An owner never changes once the transfer's first
// event is stored, so a cached owner is always right; the cache spares the
// journal two round trips per event (the refused conditional append and
// the owner's lookup, see journal.AppendOwned). When full it forgets an
// arbitrary half.
//
// It holds as many transfers as the platform has in flight at scale
// (defaultOwnerCache: 262,144 in about 15 MB): a transfer is keyed by a
// 128-bit hash of its id under seeds drawn at start, and its owner is an
// interned handle (one string per tenant), so an entry takes about 60
// bytes whatever the ids. Two ids with the same hash would share an
// owner; with unpredictable seeds that takes about 2^64 ids, far beyond
// any deployment.
type ownerCache struct {
	seeds [2]maphash.Seed

	mu  sync.RWMutex
	m   map[ownerKey]unique.Handle[string] // transfer → owner
	max int
}

type ownerKey [2]uint64

// defaultOwnerCache is how many transfers the handler's cache holds.
const defaultOwnerCache = 1 << 18

func newOwnerCache(max int) *ownerCache {
	return &ownerCache{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		m:     make(map[ownerKey]unique.Handle[string]),
		max:   max,
	}
}

func (c *ownerCache) key(transferID string) ownerKey {
	return ownerKey{maphash.String(c.seeds[0], transferID), maphash.String(c.seeds[1], transferID)}
}

func (c *ownerCache) get(transferID string) (string, bool) {
	k := c.key(transferID)
	c.mu.RLock()
	defer c.mu.RUnlock()
	owner, ok := c.m[k]
	if !ok {
		return "", false
	}
	return owner.Value(), true
}

func (c *ownerCache) put(transferID, owner string) {
	k, h := c.key(transferID), unique.Make(owner)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		n := 0
		for k := range c.m {
			if n >= c.max/2 {
				break
			}
			delete(c.m, k)
			n++
		}
	}
	c.m[k] = h
}
