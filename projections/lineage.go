package projections

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/transferd/transferd/engine"
)

// A re-run names its original in originalTransferId. The lineage bucket
// keeps that link in both directions, written when the re-run is
// projected, whether or not the original has been seen yet: the original
// knows its re-runs by id the moment they arrive, and whichever arrives
// first, the link exists once the re-run has. A re-run of a re-run
// extends the chain; the root is the transfer at the top, found by
// following the links upward.

// maxLineage bounds how many transfers one lineage query visits, so that
// hostile data cannot make a query walk the whole store.
const maxLineage = 10000

// linkOriginal moves re-run id's edges from original old to original new.
func linkOriginal(b *bolt.Bucket, id, old, new string) error {
	if old == new {
		return nil
	}
	if old != "" {
		if err := b.Delete(edgeDown(old, id)); err != nil {
			return err
		}
		if err := b.Delete(edgeUp(id)); err != nil {
			return err
		}
	}
	if new != "" {
		if err := b.Put(edgeDown(new, id), []byte{}); err != nil {
			return err
		}
		if err := b.Put(edgeUp(id), []byte(new)); err != nil {
			return err
		}
	}
	return nil
}

// Root returns the root of id's lineage: the transfer reached by following
// originalTransferId links upward (id itself when it is not a re-run). The
// root may not have been seen yet, only named by a re-run. An id that is
// neither a transfer nor named as an original is ErrNotFound.
func (s *Store) Root(id string) (string, error) {
	var root string
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		root, _, err = rootOf(tx, id)
		return err
	})
	return root, err
}

// Lineage returns the root of id's lineage and every transfer in it (the
// root and all its re-runs, re-runs of re-runs and so on), oldest first:
// by first receipt time, then transfer id, except that an original always
// comes before its re-runs. Transfers only named as originals, not seen
// yet, are absent from the list (root may be one of them). An id that is
// neither a transfer nor named as an original is ErrNotFound.
func (s *Store) Lineage(id string) (root string, transfers []*engine.Transfer, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		var tenant string
		if root, tenant, err = rootOf(tx, id); err != nil {
			return err
		}
		transfers, err = lineageFrom(tx, root, tenant)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return root, transfers, nil
}

// A lineage stays inside one tenant: a link from a re-run to its original
// counts only when both are the same issuer's transfers (or the original
// has not been seen yet), so that another tenant cannot graft its
// transfers onto a lineage by naming an originalTransferId that is not its
// own. The links are stored as the re-runs state them and filtered when
// read, which keeps the projection a function of the events whatever their
// order. The tenant of a lineage is the queried transfer's issuer; for an
// id only named as an original, the smallest issuer among the re-runs
// naming it.

// issuerOf returns the issuer of transfer id, and whether it is one.
func issuerOf(tx *bolt.Tx, id string) (string, bool, error) {
	row, ok := rowOf(tx, id)
	if !ok {
		return "", false, nil
	}
	t, err := loadRow(tx, row)
	if err != nil {
		return "", false, err
	}
	return t.Issuer, true, nil
}

// rootOf returns the root of id's lineage and the lineage's tenant.
func rootOf(tx *bolt.Tx, id string) (root, tenant string, err error) {
	lin := tx.Bucket(bucketLineage)
	tenant, seen, err := issuerOf(tx, id)
	if err != nil {
		return "", "", err
	}
	if !seen {
		// Only named as an original: the smallest issuer among its re-runs.
		prefix := edgesDown(id)
		c := lin.Cursor()
		found := false
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			is, ok, err := issuerOf(tx, string(k[len(prefix):]))
			if err != nil {
				return "", "", err
			}
			if ok && (!found || is < tenant) {
				tenant, found = is, true
			}
		}
		if !found {
			return "", "", fmt.Errorf("%w: transfer %s", ErrNotFound, id)
		}
		return id, tenant, nil
	}
	visited := map[string]bool{}
	path := []string{}
	cur := id
	for !visited[cur] && len(path) < maxLineage {
		visited[cur] = true
		path = append(path, cur)
		up := lin.Get(edgeUp(cur))
		if up == nil {
			return cur, tenant, nil
		}
		is, ok, err := issuerOf(tx, string(up))
		if err != nil {
			return "", "", err
		}
		if ok && is != tenant {
			return cur, tenant, nil // another tenant's transfer: not this lineage
		}
		cur = string(up)
	}
	// A cycle (re-runs naming each other): its smallest id is the root.
	i := slices.Index(path, cur)
	if i < 0 {
		i = 0
	}
	return slices.Min(path[i:]), tenant, nil
}

func hasPrefix(b *bolt.Bucket, prefix []byte) bool {
	k, _ := b.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// lineageFrom collects root and its descendants of tenant and orders them.
func lineageFrom(tx *bolt.Tx, root, tenant string) ([]*engine.Transfer, error) {
	lin := tx.Bucket(bucketLineage)
	children := map[string][]string{}
	nodes := map[string]*lineageNode{}
	rootNode := &lineageNode{id: root}
	if row, ok := rowOf(tx, root); ok {
		t, err := loadRow(tx, row)
		if err != nil {
			return nil, err
		}
		rootNode.t = t
	}
	nodes[root] = rootNode
	queue := []string{root}
	for len(queue) > 0 && len(nodes) < maxLineage {
		id := queue[0]
		queue = queue[1:]
		prefix := edgesDown(id)
		c := lin.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			child := string(k[len(prefix):])
			if nodes[child] != nil {
				continue
			}
			row, ok := rowOf(tx, child)
			if !ok {
				continue
			}
			t, err := loadRow(tx, row)
			if err != nil {
				return nil, err
			}
			if t.Issuer != tenant {
				continue // another tenant's re-run
			}
			nodes[child] = &lineageNode{id: child, t: t}
			children[id] = append(children[id], child)
			queue = append(queue, child)
		}
	}
	// Kahn's algorithm over the tree, always taking the oldest ready node.
	var out []*engine.Transfer
	ready := &lineageHeap{nodes[root]}
	for ready.Len() > 0 {
		n := heap.Pop(ready).(*lineageNode)
		if n.t != nil {
			out = append(out, n.t)
		}
		for _, c := range children[n.id] {
			heap.Push(ready, nodes[c])
		}
	}
	if out == nil {
		out = []*engine.Transfer{}
	}
	return out, nil
}

type lineageNode struct {
	id string
	t  *engine.Transfer // nil when only named as an original
}

// lineageHeap orders nodes by first receipt, then id; unseen transfers
// (no time) first, so that their re-runs are not held back.
type lineageHeap []*lineageNode

func (h lineageHeap) Len() int { return len(h) }
func (h lineageHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	switch {
	case a.t == nil || b.t == nil:
		if (a.t == nil) != (b.t == nil) {
			return a.t == nil
		}
	case !a.t.FirstReceivedAt.Equal(b.t.FirstReceivedAt):
		return a.t.FirstReceivedAt.Before(b.t.FirstReceivedAt)
	}
	return a.id < b.id
}
func (h lineageHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lineageHeap) Push(x any)   { *h = append(*h, x.(*lineageNode)) }
func (h *lineageHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}
