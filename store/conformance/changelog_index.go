package conformance

import (
	"context"
	"errors"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// testChangelogIndex: changes read by object list only those objects'
// updates, from the last baseline recorded by the time asked; compaction
// replaces a prefix of the changelog by a baseline at the last Seq it folds
// (rolled back with its transaction), later changes and appends keep their
// order, and the index follows.
func testChangelogIndex(t *testing.T, s store.Store) {
	d1 := engine.ObjectRef{Type: "document", ID: "d1"}
	d2 := engine.ObjectRef{Type: "document", ID: "d2"}
	user := func(id string) engine.SubjectRef {
		return engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: id}}
	}
	upd := func(op engine.Operation, res engine.ObjectRef, sub engine.SubjectRef) engine.RelationshipUpdate {
		return engine.RelationshipUpdate{Operation: op, Relationship: engine.Relationship{Resource: res, Relation: "viewer", Subject: sub}}
	}
	expires := at(30)
	eng := upd(engine.OpTouch, d1, engine.SubjectRef{Object: engine.ObjectRef{Type: "group", ID: "eng"}, Relation: "member"})
	eng.Relationship.ExpiresAt = &expires
	eng.Relationship.Caveat = &engine.Caveat{Name: "ip_allowed", Context: map[string]any{"cidr": "10.0.0.0/8"}}
	b := store.RelationshipChange{At: at(0), Baseline: true, Updates: []engine.RelationshipUpdate{upd(engine.OpTouch, d1, user("ann")), upd(engine.OpTouch, d2, user("bob"))}}
	c2 := store.RelationshipChange{At: at(5), Updates: []engine.RelationshipUpdate{eng, upd(engine.OpDelete, d1, user("ann"))}}
	c3 := store.RelationshipChange{At: at(10), Updates: []engine.RelationshipUpdate{upd(engine.OpTouch, d2, user("ann"))}}
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendChanges(ctx, "", "tok1", []store.RelationshipChange{b, c2, c3})
	})
	b.Seq, c2.Seq, c3.Seq = 1, 2, 3
	only := func(c store.RelationshipChange, res engine.ObjectRef) store.RelationshipChange {
		var mine []engine.RelationshipUpdate
		for _, u := range c.Updates {
			if u.Relationship.Resource == res {
				mine = append(mine, u)
			}
		}
		c.Updates = mine
		return c
	}
	byObject := func(what string, res engine.ObjectRef, until int, want ...store.RelationshipChange) {
		t.Helper()
		MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
			got, err := tx.ObjectChanges(ctx, []engine.ObjectRef{res, {Type: "document", ID: "unknown"}}, at(until))
			same(t, what, got, want)
			return err
		})
	}
	byObject("d1's changes", d1, 60, only(b, d1), c2)
	byObject("d2's changes", d2, 60, only(b, d2), c3)
	byObject("d2's changes until minute 7", d2, 7, only(b, d2))
	byObject("d1's changes until minute 5 (inclusive)", d1, 5, only(b, d1), c2)

	// compaction: the first two fold into a baseline at seq 2; a failed transaction keeps them
	folded := store.RelationshipChange{At: at(5), Updates: []engine.RelationshipUpdate{eng, upd(engine.OpTouch, d2, user("bob"))}}
	boom := errors.New("boom")
	if err := s.InTx(context.Background(), func(tx store.Tx) error {
		if err := tx.CompactChanges(context.Background(), 2, folded); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("compaction in a failed transaction: %v", err)
	}
	byObject("d1's changes after a rolled back compaction", d1, 60, only(b, d1), c2)
	if err := s.InTx(context.Background(), func(tx store.Tx) error {
		return tx.CompactChanges(context.Background(), 99, folded)
	}); !errors.Is(err, trellis.ErrNotFound) {
		t.Fatalf("compacting through an unknown change: %v, want ErrNotFound", err)
	}
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.CompactChanges(ctx, 2, folded) })
	folded.Seq, folded.Baseline = 2, true
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		all, err := tx.ChangesUntil(ctx, at(60))
		same(t, "the changelog after compaction", all, []store.RelationshipChange{folded, c3})
		start, err2 := tx.ChangelogStart(ctx)
		same(t, "the changelog's start after compaction", start, at(5))
		return errors.Join(err, err2)
	})
	byObject("d1's changes after compaction", d1, 60, only(folded, d1))
	byObject("d2's changes after compaction", d2, 60, only(folded, d2), c3)
	c4 := store.RelationshipChange{At: at(20), Updates: []engine.RelationshipUpdate{upd(engine.OpDelete, d1, user("zed"))}}
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendChanges(ctx, "tok1", "tok2", []store.RelationshipChange{c4})
	})
	c4.Seq = 4
	byObject("d1's changes after an append", d1, 60, only(folded, d1), c4)
}
