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
		root, err = rootOf(tx, id)
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
		if root, err = rootOf(tx, id); err != nil {
			return err
		}
		transfers, err = lineageFrom(tx, root)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return root, transfers, nil
}

func rootOf(tx *bolt.Tx, id string) (string, error) {
	lin := tx.Bucket(bucketLineage)
	if _, ok := rowOf(tx, id); !ok && !hasPrefix(lin, edgesDown(id)) {
		return "", fmt.Errorf("%w: transfer %s", ErrNotFound, id)
	}
	seen := map[string]bool{}
	path := []string{}
	cur := id
	for !seen[cur] && len(path) < maxLineage {
		seen[cur] = true
		path = append(path, cur)
		up := lin.Get(edgeUp(cur))
		if up == nil {
			return cur, nil
		}
		cur = string(up)
	}
	// A cycle (re-runs naming each other): its smallest id is the root.
	i := slices.Index(path, cur)
	if i < 0 {
		i = 0
	}
	return slices.Min(path[i:]), nil
}

func hasPrefix(b *bolt.Bucket, prefix []byte) bool {
	k, _ := b.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// lineageFrom collects root and its descendants and orders them.
func lineageFrom(tx *bolt.Tx, root string) ([]*engine.Transfer, error) {
	lin := tx.Bucket(bucketLineage)
	children := map[string][]string{}
	seen := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 && len(seen) < maxLineage {
		id := queue[0]
		queue = queue[1:]
		prefix := edgesDown(id)
		c := lin.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			child := string(k[len(prefix):])
			if seen[child] {
				continue
			}
			seen[child] = true
			children[id] = append(children[id], child)
			queue = append(queue, child)
		}
	}
	nodes := map[string]*lineageNode{}
	for id := range seen {
		n := &lineageNode{id: id}
		if row, ok := rowOf(tx, id); ok {
			t, err := loadRow(tx, row)
			if err != nil {
				return nil, err
			}
			n.t = t
		}
		nodes[id] = n
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
