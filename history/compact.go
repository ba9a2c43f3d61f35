package history

import (
	"context"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Compact folds every change recorded at or before boundary into one
// baseline, stored at the last folded change's Seq and time: the
// relationships then held, expiries and caveats kept (those expired by then
// left out, as no later time sees them). An answer at any time from that
// change on replays exactly as before; earlier times are before the
// changelog. It returns how many changes it folded (0: nothing to fold). The
// recorded times are taken to grow with Seq (one recorder appends at a time).
func Compact(ctx context.Context, st store.Store, boundary time.Time) (int, error) {
	folded := 0
	err := st.InTx(ctx, func(tx store.Tx) error {
		changes, err := tx.ChangesUntil(ctx, boundary)
		if err != nil {
			return err
		}
		if len(changes) == 0 || len(changes) == 1 && changes[0].Baseline {
			return nil
		}
		last := changes[len(changes)-1]
		held, order := fold(changes)
		base := store.RelationshipChange{At: last.At, Baseline: true}
		seen := map[string]bool{}
		for _, k := range order {
			r, ok := held[k]
			if !ok || seen[k] || r.ExpiresAt != nil && !r.ExpiresAt.After(last.At) {
				continue
			}
			seen[k] = true
			base.Updates = append(base.Updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
		}
		if err := tx.CompactChanges(ctx, last.Seq, base); err != nil {
			return fmt.Errorf("history: compacting the changelog through change %d: %w", last.Seq, err)
		}
		folded = len(changes)
		return nil
	})
	return folded, err
}

// Indexed is the graph's relationships at a past time read object by object
// from the changelog's index (store.ChangelogIndex): each object's changes
// since the last baseline, folded as State folds them. It reads like the
// engine for what engine.ReadReachable asks (one object's relation), so a
// replay reads the changes of the objects it reaches, not every tenant's.
type Indexed struct {
	Store   store.Store
	At      time.Time
	objects map[engine.ObjectRef]*Snapshot
	changes map[int64]bool
}

// Changes is how many distinct changes the reads drew on.
func (x *Indexed) Changes() int { return len(x.changes) }

// Len is how many relationships of the objects read it holds.
func (x *Indexed) Len() int {
	n := 0
	for _, s := range x.objects {
		n += s.Len()
	}
	return n
}

// ReadRelationships returns the relationships f selects; f names one object
// (type and id), as a replay's reads do.
func (x *Indexed) ReadRelationships(ctx context.Context, req engine.ReadRequest) (engine.ReadPage, error) {
	f := req.Filter
	if f.ResourceType == "" || f.ResourceID == "" {
		return engine.ReadPage{}, fmt.Errorf("history: an indexed replay reads one object at a time, not %+v", f)
	}
	o := engine.ObjectRef{Type: f.ResourceType, ID: f.ResourceID}
	s, ok := x.objects[o]
	if !ok {
		var changes []store.RelationshipChange
		if err := x.Store.Read(ctx, func(tx store.Tx) error {
			var err error
			changes, err = tx.ObjectChanges(ctx, []engine.ObjectRef{o}, x.At)
			return err
		}); err != nil {
			return engine.ReadPage{}, err
		}
		if x.objects == nil {
			x.objects, x.changes = map[engine.ObjectRef]*Snapshot{}, map[int64]bool{}
		}
		for _, c := range changes {
			if len(c.Updates) > 0 {
				x.changes[c.Seq] = true
			}
		}
		s = State(changes, x.At)
		x.objects[o] = s
	}
	return s.ReadRelationships(ctx, req)
}

// Compactor folds, periodically, the changes older than the retention into
// a baseline (Compact), a margin of a tenth of the retention behind it so
// that an answer being replayed near the boundary never sees its baseline
// move past it. Several nodes may run it: compaction is one transaction and
// a second one at the same boundary folds nothing.
type Compactor struct {
	Store     store.Store
	Retention time.Duration // > 0
	Now       func() time.Time
	Logger    interface {
		Info(msg string, args ...any)
		Warn(msg string, args ...any)
	}
}

// Boundary is the time up to which changes are folded now.
func (c *Compactor) Boundary() time.Time {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	return now().Add(-c.Retention - c.Retention/10)
}

// Run compacts at start and then every tenth of the retention (between a
// minute and an hour) until ctx ends.
func (c *Compactor) Run(ctx context.Context) {
	every := min(max(c.Retention/10, time.Minute), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := Compact(ctx, c.Store, c.Boundary())
		switch {
		case err != nil && ctx.Err() == nil:
			c.Logger.Warn("history: compacting the relationship changelog failed; retrying later", "err", err)
		case n > 0:
			c.Logger.Info("history: compacted the relationship changelog", "folded", n, "boundary", c.Boundary())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
