package engine_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/trellis-iam/trellis/engine"
)

// reachSchema has each construct ReadReachable follows: a relation's subject
// sets (group#member, nested), an arrow (parent->view), an intersection arrow
// through a binding, an exclusion, a wildcard.
const reachSchema = `
definition user {}
definition group {
	relation member: user | group#member
}
definition role {
	relation grants: user:*
}
definition binding {
	relation role: role
	relation subject: user | group#member
	permission view = subject & role->grants
}
definition folder {
	relation parent: folder
	relation viewer: user | group#member
	relation binding: binding
	relation banned: user
	permission view = (viewer + binding->view + parent->view) - banned
}
`

func TestReadReachableFollowsTheSchemaNotTheGraph(t *testing.T) {
	ctx := t.Context()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := eng.WriteSchema(ctx, reachSchema); err != nil {
		t.Fatal(err)
	}
	r := func(res, relation, sub string) engine.Relationship {
		o, err := engine.ParseObjectRef("resource", res)
		if err != nil {
			t.Fatal(err)
		}
		s, err := engine.ParseSubjectRef("subject", sub)
		if err != nil {
			t.Fatal(err)
		}
		return engine.Relationship{Resource: o, Relation: relation, Subject: s}
	}
	reachable := []engine.Relationship{
		r("folder:leaf", "parent", "folder:top"),
		r("folder:leaf", "viewer", "group:staff#member"),
		r("folder:leaf", "banned", "user:mallory"),
		r("group:staff", "member", "group:core#member"),
		r("group:core", "member", "user:ann"),
		r("folder:top", "viewer", "user:bob"),
		r("folder:top", "binding", "binding:b1"),
		r("binding:b1", "role", "role:reader"),
		r("binding:b1", "subject", "user:cat"),
		r("role:reader", "grants", "user:*"),
		r("folder:top", "banned", "user:x"), // parent->view subtracts the parent's banned
	}
	elsewhere := []engine.Relationship{ // other trees: never read
		r("folder:other", "viewer", "user:dan"),
		r("folder:other", "parent", "folder:top"), // points at the tree, not reached from it
		r("group:unrelated", "member", "user:eve"),
		r("binding:b2", "role", "role:reader"),
		r("folder:other", "banned", "user:y"),
	}
	var ups []engine.RelationshipUpdate
	for _, rel := range append(slices.Clone(reachable), elsewhere...) {
		ups = append(ups, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel})
	}
	if _, err := eng.WriteRelationships(ctx, ups); err != nil {
		t.Fatal(err)
	}
	root := []engine.SubjectRef{{Object: engine.ObjectRef{Type: "folder", ID: "leaf"}, Relation: "view"}}
	got, err := engine.ReadReachable(ctx, eng, reachSchema, root, 0)
	if err != nil {
		t.Fatal(err)
	}
	str := func(rels []engine.Relationship) []string {
		var out []string
		for _, rel := range rels {
			out = append(out, rel.String())
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(str(got), str(reachable)) {
		t.Errorf("reachable from folder:leaf#view:\n got %v\nwant %v", str(got), str(reachable))
	}

	// the scratch loaded with them answers as the whole graph does
	scratch, stop, err := engine.NewScratch(ctx, reachSchema, got)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, g := range []engine.Engine{eng, scratch} {
		found, err := g.LookupSubjects(ctx, engine.LookupSubjectsRequest{Resource: root[0].Object, Permission: "view", SubjectType: "user",
			Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, f := range found {
			ids = append(ids, f.ID)
		}
		slices.Sort(ids)
		if want := []string{"ann", "bob", "cat"}; !slices.Equal(ids, want) {
			t.Errorf("view of folder:leaf: %v, want %v", ids, want)
		}
	}

	// "" is every relation and permission of the object
	all, err := engine.ReadReachable(ctx, eng, reachSchema, []engine.SubjectRef{{Object: engine.ObjectRef{Type: "folder", ID: "top"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"binding:b1#role@role:reader", "binding:b1#subject@user:cat", "folder:top#banned@user:x",
		"folder:top#binding@binding:b1", "folder:top#viewer@user:bob", "role:reader#grants@user:*"}; !slices.Equal(str(all), want) {
		t.Errorf("reachable from folder:top: %v, want %v", str(all), want)
	}

	// past the limit
	if _, err := engine.ReadReachable(ctx, eng, reachSchema, root, 5); !errors.Is(err, engine.ErrTooManyRelationships) {
		t.Errorf("limit 5: %v, want ErrTooManyRelationships", err)
	}
	if got, err := engine.ReadReachable(ctx, eng, reachSchema, root, len(reachable)); err != nil || len(got) != len(reachable) {
		t.Errorf("limit %d: %d relationships, %v", len(reachable), len(got), err)
	}
}
