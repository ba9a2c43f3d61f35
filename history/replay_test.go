package history

import (
	"context"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// TestStateFolds: touches and deletes apply in order, a baseline replaces what
// came before it, relationships expired at the time asked are left out and
// those still live keep granting whatever the replay engine's clock says.
func TestStateFolds(t *testing.T) {
	at := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	doc := engine.ObjectRef{Type: "document", ID: "d"}
	user := func(id string) engine.SubjectRef {
		return engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: id}}
	}
	viewer := func(id string, exp *time.Time) engine.Relationship {
		return engine.Relationship{Resource: doc, Relation: "viewer", Subject: user(id), ExpiresAt: exp}
	}
	before, after := at.Add(-time.Minute), at.Add(time.Minute)
	touch := func(r engine.Relationship) engine.RelationshipUpdate {
		return engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r}
	}
	changes := []store.RelationshipChange{
		{Baseline: true, Updates: []engine.RelationshipUpdate{touch(viewer("gone", nil))}},
		{Baseline: true, Updates: []engine.RelationshipUpdate{touch(viewer("ann", nil)), touch(viewer("bob", nil))}},
		{Updates: []engine.RelationshipUpdate{{Operation: engine.OpDelete, Relationship: viewer("bob", nil)}, touch(viewer("cy", &before)), touch(viewer("dee", &after))}},
	}
	s := State(changes, at)
	page, err := s.ReadRelationships(context.Background(), engine.ReadRequest{Filter: engine.RelationshipFilter{ResourceType: "document", Relation: "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Relationships {
		got = append(got, r.Subject.Object.ID)
		if r.Subject.Object.ID == "dee" && (r.ExpiresAt == nil || !r.ExpiresAt.After(time.Now().AddDate(100, 0, 0))) {
			t.Errorf("dee's grant, live at the time asked, expires %v in the replay", r.ExpiresAt)
		}
	}
	if len(got) != 2 || got[0] != "ann" || got[1] != "dee" {
		t.Fatalf("state %v, want ann (baseline) and dee (not yet expired)", got)
	}
	page, _ = s.ReadRelationships(context.Background(), engine.ReadRequest{Filter: engine.RelationshipFilter{ResourceType: "document", Subject: &engine.SubjectFilter{Type: "user", ID: "ann"}}})
	if len(page.Relationships) != 1 {
		t.Fatalf("subject filter: %v", page.Relationships)
	}
}
