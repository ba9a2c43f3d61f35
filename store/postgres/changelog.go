package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
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
		seqs, err := all(ctx, t, "append relationship change", func(r scanner) (int64, error) {
			var seq int64
			return seq, r.Scan(&seq)
		}, `INSERT INTO relationship_changes (at, updates, baseline) VALUES ($1, $2, $3) RETURNING seq`, c.At, updates, c.Baseline)
		if err != nil {
			return err
		}
		if err := t.indexChange(ctx, seqs[0], c.Updates); err != nil {
			return err
		}
	}
	return nil
}

// indexChange stores change seq's updates grouped by their resource.
func (t *tx) indexChange(ctx context.Context, seq int64, us []engine.RelationshipUpdate) error {
	var objects []string
	by := map[string][]engine.RelationshipUpdate{}
	for _, u := range us {
		o := u.Relationship.Resource.String()
		if by[o] == nil {
			objects = append(objects, o)
		}
		by[o] = append(by[o], u)
	}
	for _, o := range objects {
		updates, err := encodeUpdates(by[o])
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, "index relationship change", `INSERT INTO relationship_change_objects (seq, object, updates) VALUES ($1, $2, $3)`, seq, o, updates); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ObjectChanges(ctx context.Context, objects []engine.ObjectRef, until time.Time) ([]store.RelationshipChange, error) {
	keys := make([]string, len(objects))
	for i, o := range objects {
		keys[i] = o.String()
	}
	rows, err := all(ctx, t, "list relationship changes by object", func(r scanner) (store.RelationshipChange, error) {
		var c store.RelationshipChange
		var updates []byte
		if err := r.Scan(&c.Seq, &c.At, &updates, &c.Baseline); err != nil {
			return c, err
		}
		if updates != nil {
			var err error
			if c.Updates, err = decodeUpdates(updates); err != nil {
				return c, fmt.Errorf("relationship change %d: %w", c.Seq, err)
			}
		}
		return c, nil
	}, `WITH base AS (SELECT coalesce(max(seq), 0) AS seq FROM relationship_changes WHERE baseline AND at <= $2)
SELECT c.seq, c.at, jsonb_agg(e.u ORDER BY o.object, e.n) FILTER (WHERE e.u IS NOT NULL), c.baseline
FROM relationship_changes c
LEFT JOIN relationship_change_objects o ON o.seq = c.seq AND o.object = ANY($1)
LEFT JOIN LATERAL jsonb_array_elements(o.updates) WITH ORDINALITY AS e(u, n) ON true
WHERE c.seq >= (SELECT seq FROM base) AND c.at <= $2 AND (c.baseline OR o.seq IS NOT NULL)
GROUP BY c.seq
ORDER BY c.seq`, keys, until)
	return rows, err
}

func (t *tx) CompactChanges(ctx context.Context, through int64, base store.RelationshipChange) error {
	n, err := t.exec(ctx, "compact relationship changes", `DELETE FROM relationship_changes WHERE seq <= $1 AND EXISTS (SELECT 1 FROM relationship_changes WHERE seq = $1)`, through)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: relationship change %d", trellis.ErrNotFound, through)
	}
	updates, err := encodeUpdates(base.Updates)
	if err != nil {
		return err
	}
	if updates == nil {
		updates = []byte("[]")
	}
	if _, err := t.exec(ctx, "store compacted baseline", `INSERT INTO relationship_changes (seq, at, updates, baseline) VALUES ($1, $2, $3, true)`, through, base.At, updates); err != nil {
		return err
	}
	return t.indexChange(ctx, through, base.Updates)
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
