package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// ---- relationship changelog

func (t *tx) ChangelogCursor(context.Context) (string, error) {
	if t.done {
		return "", errTxDone
	}
	return t.changelogCursor, nil
}

func (t *tx) AppendChanges(_ context.Context, from, to string, changes []store.RelationshipChange) error {
	if err := t.writable(); err != nil {
		return err
	}
	if t.changelogCursor != from {
		return fmt.Errorf("%w: the changelog moved past the cursor %q", trellis.ErrConflict, from)
	}
	n, old := len(t.changes), t.changelogCursor
	for _, c := range changes {
		c.Updates = cloneOutbox(store.OutboxEntry{Updates: c.Updates}).Updates
		c.Seq = 1
		if len(t.changes) > 0 {
			c.Seq = t.changes[len(t.changes)-1].Seq + 1
		}
		t.changes = append(t.changes, c)
	}
	t.changelogCursor = to
	t.changeIndex.reset()
	t.undo = append(t.undo, func() {
		clear(t.changes[n:])
		t.changes = t.changes[:n]
		t.changelogCursor = old
		t.changeIndex.reset()
	})
	return nil
}

func (t *tx) ChangesUntil(_ context.Context, until time.Time) ([]store.RelationshipChange, error) {
	if t.done {
		return nil, errTxDone
	}
	var out []store.RelationshipChange
	for _, c := range t.changes {
		if c.At.After(until) {
			continue
		}
		c.Updates = cloneOutbox(store.OutboxEntry{Updates: c.Updates}).Updates
		out = append(out, c)
	}
	return out, nil
}

func (t *tx) ChangelogStart(context.Context) (time.Time, error) {
	if t.done {
		return time.Time{}, errTxDone
	}
	if len(t.changes) == 0 {
		return time.Time{}, nil
	}
	return t.changes[0].At, nil
}

// changeIndex is the changelog by object: each change's updates grouped by
// their resource (as PostgreSQL's relationship_change_objects), built on
// first use after a write. Readers share it under the store's read lock, so
// its own mutex guards the build.
type changeIndex struct {
	mu        sync.Mutex
	built     bool
	byObject  map[engine.ObjectRef][]store.RelationshipChange
	baselines []store.RelationshipChange // without updates
}

// reset drops the index (under the store's write lock: no reader holds it).
func (x *changeIndex) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.built, x.byObject, x.baselines = false, nil, nil
}

func (x *changeIndex) get(changes []store.RelationshipChange) *changeIndex {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.built {
		return x
	}
	x.byObject = map[engine.ObjectRef][]store.RelationshipChange{}
	for _, c := range changes {
		if c.Baseline {
			x.baselines = append(x.baselines, store.RelationshipChange{Seq: c.Seq, At: c.At, Baseline: true})
		}
		for _, u := range c.Updates {
			o := u.Relationship.Resource
			list := x.byObject[o]
			if n := len(list); n == 0 || list[n-1].Seq != c.Seq {
				list = append(list, store.RelationshipChange{Seq: c.Seq, At: c.At, Baseline: c.Baseline})
			}
			list[len(list)-1].Updates = append(list[len(list)-1].Updates, u)
			x.byObject[o] = list
		}
	}
	x.built = true
	return x
}

func (t *tx) ObjectChanges(_ context.Context, objects []engine.ObjectRef, until time.Time) ([]store.RelationshipChange, error) {
	if t.done {
		return nil, errTxDone
	}
	x := t.changeIndex.get(t.changes)
	var base *store.RelationshipChange
	for i, b := range x.baselines {
		if !b.At.After(until) {
			base = &x.baselines[i]
		}
	}
	bySeq := map[int64]*store.RelationshipChange{}
	var out []*store.RelationshipChange
	if base != nil {
		b := *base
		bySeq[b.Seq] = &b
		out = append(out, &b)
	}
	seen := map[engine.ObjectRef]bool{}
	for _, o := range objects {
		if seen[o] {
			continue
		}
		seen[o] = true
		for _, c := range x.byObject[o] {
			if c.At.After(until) || base != nil && c.Seq < base.Seq {
				continue
			}
			have := bySeq[c.Seq]
			if have == nil {
				have = &store.RelationshipChange{Seq: c.Seq, At: c.At, Baseline: c.Baseline}
				bySeq[c.Seq] = have
				out = append(out, have)
			}
			have.Updates = append(have.Updates, cloneOutbox(store.OutboxEntry{Updates: c.Updates}).Updates...)
		}
	}
	slices.SortFunc(out, func(a, b *store.RelationshipChange) int { return cmp.Compare(a.Seq, b.Seq) })
	list := make([]store.RelationshipChange, len(out))
	for i, c := range out {
		list[i] = *c
	}
	return list, nil
}

func (t *tx) CompactChanges(_ context.Context, through int64, base store.RelationshipChange) error {
	if err := t.writable(); err != nil {
		return err
	}
	i := slices.IndexFunc(t.changes, func(c store.RelationshipChange) bool { return c.Seq == through })
	if i < 0 {
		return fmt.Errorf("%w: relationship change %d", trellis.ErrNotFound, through)
	}
	old := t.changes
	base.Seq, base.Baseline = through, true
	base.Updates = cloneOutbox(store.OutboxEntry{Updates: base.Updates}).Updates
	t.changes = append([]store.RelationshipChange{base}, old[i+1:]...)
	t.changeIndex.reset()
	t.undo = append(t.undo, func() {
		t.changes = old
		t.changeIndex.reset()
	})
	return nil
}
