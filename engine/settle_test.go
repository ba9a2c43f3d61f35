package engine

import (
	"context"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// A node that lost track of its newest revision (full: overlapping or failed
// writes) reads at the head; the first minimizeLatency check that began after
// everything recorded settles it to that check's revision, so later reads are
// quantized again. A check that overlapped something recorded settles nothing.
func TestHeadReadSettlesTheNewestRevision(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(ctx, EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.WriteSchema(ctx, "definition user {}\ndefinition doc {\n\trelation viewer: user\n\tpermission view = viewer\n}"); err != nil {
		t.Fatal(err)
	}
	rel := Relationship{Resource: ObjectRef{Type: "doc", ID: "d"}, Relation: "viewer", Subject: SubjectRef{Object: ObjectRef{Type: "user", ID: "u"}}}
	if _, err := e.WriteRelationships(ctx, []RelationshipUpdate{{Operation: OpTouch, Relationship: rel}}); err != nil {
		t.Fatal(err)
	}
	s := e.SpiceDB
	isHead := func() bool {
		_, ok := s.consistency(Consistency{}).Requirement.(*v1.Consistency_FullyConsistent)
		return ok
	}
	if isHead() {
		t.Fatal("after a write nothing overlapped, minimizeLatency reads at the head")
	}

	s.noteUnknown() // a write whose outcome is unknown
	if !isHead() {
		t.Fatal("after an unknown outcome, minimizeLatency does not read at the head")
	}
	// a check that began before something else was recorded settles nothing
	_, settle := s.readConsistency(Consistency{})
	s.noteUnknown()
	settle("GhUKEzE3") // any token: it must be ignored
	if !isHead() {
		t.Fatal("a read that overlapped a recorded event settled the revision")
	}
	// fully consistent and atLeastAsFresh reads do not settle it either
	for _, c := range []Consistency{{Mode: FullyConsistent}, {Mode: AtLeastAsFresh, Token: s.LastWrite()}} {
		if _, err := e.Check(ctx, CheckRequest{Resource: rel.Resource, Permission: "view", Subject: rel.Subject, Consistency: c}); err != nil {
			t.Fatal(err)
		}
		if !isHead() {
			t.Fatalf("a read with consistency mode %d settled the revision", c.Mode)
		}
	}
	res, err := e.Check(ctx, CheckRequest{Resource: rel.Resource, Permission: "view", Subject: rel.Subject})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Allowed() {
		t.Fatal("the written relationship is not seen")
	}
	if isHead() || s.LastWrite() != res.CheckedAt {
		t.Fatalf("after a head check nothing overlapped: head %v, last %q, checked at %q", isHead(), s.LastWrite(), res.CheckedAt)
	}
	// and reads stay at least as fresh as every acknowledged write after it
	if _, err := e.WriteRelationships(ctx, []RelationshipUpdate{{Operation: OpDelete, Relationship: rel}}); err != nil {
		t.Fatal(err)
	}
	res, err = e.Check(ctx, CheckRequest{Resource: rel.Resource, Permission: "view", Subject: rel.Subject})
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed() {
		t.Fatal("a minimizeLatency check after the delete still allows")
	}
}
