package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

func (t *tx) ChangelogCursor(ctx context.Context) (string, error) {
	cursors, err := all(ctx, t, "read changelog cursor", func(r scanner) (string, error) {
		var c string
		return c, r.Scan(&c)
	}, `SELECT cursor FROM changelog_cursor WHERE id = 1`)
	if err != nil || len(cursors) == 0 {
		return "", err
	}
	return cursors[0], nil
}

// AppendChanges moves the cursor first, conditionally: the row lock it takes
// makes a second writer wait, then find the cursor moved (ErrConflict).
func (t *tx) AppendChanges(ctx context.Context, from, to string, changes []store.RelationshipChange) error {
	var n int64
	var err error
	if from == "" {
		n, err = t.exec(ctx, "start changelog", `INSERT INTO changelog_cursor (id, cursor) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, to)
	} else {
		n, err = t.exec(ctx, "move changelog cursor", `UPDATE changelog_cursor SET cursor = $2 WHERE id = 1 AND cursor = $1`, from, to)
	}
	if errors.Is(err, trellis.ErrConflict) {
		n = 0
	} else if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: the changelog moved past the cursor %q", trellis.ErrConflict, from)
	}
	for _, c := range changes {
		updates, err := encodeUpdates(c.Updates)
		if err != nil {
			return err
		}
		if updates == nil {
			updates = []byte("[]")
		}
		if _, err := t.exec(ctx, "append relationship change", `INSERT INTO relationship_changes (at, updates, baseline) VALUES ($1, $2, $3)`,
			c.At, updates, c.Baseline); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ChangesUntil(ctx context.Context, until time.Time) ([]store.RelationshipChange, error) {
	return all(ctx, t, "list relationship changes", func(r scanner) (store.RelationshipChange, error) {
		var c store.RelationshipChange
		var updates []byte
		if err := r.Scan(&c.Seq, &c.At, &updates, &c.Baseline); err != nil {
			return c, err
		}
		var err error
		if c.Updates, err = decodeUpdates(updates); err != nil {
			return c, fmt.Errorf("relationship change %d: %w", c.Seq, err)
		}
		return c, nil
	}, `SELECT seq, at, updates, baseline FROM relationship_changes WHERE at <= $1 ORDER BY seq`, until)
}

func (t *tx) ChangelogStart(ctx context.Context) (time.Time, error) {
	at, err := all(ctx, t, "read changelog start", func(r scanner) (time.Time, error) {
		var at time.Time
		return at, r.Scan(&at)
	}, `SELECT at FROM relationship_changes ORDER BY seq LIMIT 1`)
	if err != nil || len(at) == 0 {
		return time.Time{}, err
	}
	return at[0], nil
}
