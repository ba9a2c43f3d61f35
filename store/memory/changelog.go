package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis"
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
		c.Seq = int64(len(t.changes)) + 1
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
