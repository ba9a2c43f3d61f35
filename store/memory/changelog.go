package memory

import (
	"context"
	"fmt"
	"slices"
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
	t.undo = append(t.undo, func() {
		clear(t.changes[n:])
		t.changes = t.changes[:n]
		t.changelogCursor = old
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

func (t *tx) ObjectChanges(_ context.Context, objects []engine.ObjectRef, until time.Time) ([]store.RelationshipChange, error) {
	if t.done {
		return nil, errTxDone
	}
	want := map[engine.ObjectRef]bool{}
	for _, o := range objects {
		want[o] = true
	}
	from := 0
	for i, c := range t.changes {
		if c.Baseline && !c.At.After(until) {
			from = i
		}
	}
	var out []store.RelationshipChange
	for _, c := range t.changes[from:] {
		if c.At.After(until) {
			continue
		}
		var mine []engine.RelationshipUpdate
		for _, u := range c.Updates {
			if want[u.Relationship.Resource] {
				mine = append(mine, u)
			}
		}
		if len(mine) == 0 && !c.Baseline {
			continue
		}
		c.Updates = cloneOutbox(store.OutboxEntry{Updates: mine}).Updates
		out = append(out, c)
	}
	return out, nil
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
	t.undo = append(t.undo, func() { t.changes = old })
	return nil
}
