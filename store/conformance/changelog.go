package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// testChangelog: changes append in order with the cursor they run through,
// only from the cursor stored (a second writer gets ErrConflict and nothing
// of its batch is kept); they list up to a time, in order, with deletes,
// expiries and caveats as given.
func testChangelog(t *testing.T, s store.Store) {
	expires := at(30)
	doc := engine.ObjectRef{Type: "document", ID: "d1"}
	ann := engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: "ann"}}
	eng := engine.SubjectRef{Object: engine.ObjectRef{Type: "group", ID: "eng"}, Relation: "member"}
	baseline := store.RelationshipChange{At: at(0), Baseline: true, Updates: []engine.RelationshipUpdate{
		{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: doc, Relation: "viewer", Subject: ann}},
	}}
	second := store.RelationshipChange{At: at(5), Updates: []engine.RelationshipUpdate{
		{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: doc, Relation: "viewer", Subject: eng, ExpiresAt: &expires,
			Caveat: &engine.Caveat{Name: "ip_allowed", Context: map[string]any{"cidr": "10.0.0.0/8"}}}},
		{Operation: engine.OpDelete, Relationship: engine.Relationship{Resource: doc, Relation: "viewer", Subject: ann}},
	}}
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		c, err := tx.ChangelogCursor(ctx)
		same(t, "cursor before any change", c, "")
		start, err2 := tx.ChangelogStart(ctx)
		same(t, "start before any change", start, time.Time{})
		return errors.Join(err, err2)
	})
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendChanges(ctx, "", "tok1", []store.RelationshipChange{baseline})
	})
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendChanges(ctx, "tok1", "tok2", []store.RelationshipChange{second})
	})
	// a writer that read an old cursor appends nothing
	for _, from := range []string{"", "tok1"} {
		err := s.InTx(context.Background(), func(tx store.Tx) error {
			return tx.AppendChanges(context.Background(), from, "tok-x", []store.RelationshipChange{second})
		})
		if !errors.Is(err, trellis.ErrConflict) {
			t.Fatalf("append from the stale cursor %q: %v, want ErrConflict", from, err)
		}
	}
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		c, err := tx.ChangelogCursor(ctx)
		if err != nil {
			return err
		}
		same(t, "cursor", c, "tok2")
		start, err := tx.ChangelogStart(ctx)
		if err != nil {
			return err
		}
		same(t, "start", start, at(0))
		all, err := tx.ChangesUntil(ctx, at(60))
		if err != nil {
			return err
		}
		baseline.Seq, second.Seq = 1, 2
		same(t, "every change", all, []store.RelationshipChange{baseline, second})
		early, err := tx.ChangesUntil(ctx, at(4))
		if err != nil {
			return err
		}
		same(t, "changes until minute 4", early, []store.RelationshipChange{baseline})
		exact, err := tx.ChangesUntil(ctx, at(5))
		same(t, "changes until minute 5 (inclusive)", len(exact), 2)
		return err
	})
}
