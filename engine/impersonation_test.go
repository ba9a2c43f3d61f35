package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/trellis-iam/trellis/engine"
)

// TestImpersonationGateConfinement: the gate answers only for resources that
// hang from the impersonation's organization subtree, and denies what it
// cannot place (ADR 0009, confinement).
func TestImpersonationGateConfinement(t *testing.T) {
	_, c := startPair(t)
	ctx := context.Background()
	future := time.Now().Add(time.Hour)
	actor := mkRel("impersonation:i1", "actor", "user:sam")
	actor.ExpiresAt = &future
	actor.Caveat = &Caveat{Name: "impersonation_scope", Context: map[string]any{"allowed": []any{"view", "access"}}}
	write(t, c, OpTouch,
		mkRel("impersonation:i1", "org", "organization:ca"),
		mkRel("impersonation:i1", "target", "user:alice"),
		actor,
		// tenant A: ra -> ca -> cc; tenant B: rb -> cb
		mkRel("organization:ca", "parent", "organization:ra"),
		mkRel("organization:cc", "parent", "organization:ca"),
		mkRel("organization:cb", "parent", "organization:rb"),
		mkRel("document:a", "org", "organization:ca"),
		mkRel("document:sub", "org", "organization:cc"),
		mkRel("document:b", "org", "organization:cb"),
		mkRel("document:up", "org", "organization:ra"),
		// through a folder or a group of the subtree, or of another tenant
		mkRel("folder:fa", "org", "organization:ca"),
		mkRel("document:in-folder", "folder", "folder:fa"),
		mkRel("folder:fb", "org", "organization:cb"),
		mkRel("document:in-b-folder", "folder", "folder:fb"),
		mkRel("group:ga", "org", "organization:cc"),
		mkRel("group:gb", "org", "organization:cb"),
		mkRel("document:shared-in", "org", "organization:ca"),
		mkRel("document:shared-in", "viewer", "group:ga#member"),
		mkRel("document:shared-out", "org", "organization:ca"),
		mkRel("document:shared-out", "viewer", "group:gb#member"),
		// no organization; an organization with two parents; a parent cycle
		mkRel("document:loose", "owner", "user:alice"),
		mkRel("document:loose", "viewer", "user:*"),
		mkRel("organization:dual", "parent", "organization:ca"),
		mkRel("organization:dual", "parent", "organization:cb"),
		mkRel("document:dual", "org", "organization:dual"),
		mkRel("organization:cy1", "parent", "organization:cy2"),
		mkRel("organization:cy2", "parent", "organization:cy1"),
		mkRel("document:cycle", "org", "organization:cy1"),
	)
	// a folder chain longer than the walk's bound, and a short one
	var chain []Relationship
	for i := range 70 {
		chain = append(chain, mkRel(fmt.Sprintf("folder:deep%d", i), "parent", fmt.Sprintf("folder:deep%d", i+1)))
	}
	chain = append(chain, mkRel("folder:deep70", "org", "organization:ca"),
		mkRel("document:deep", "folder", "folder:deep0"), mkRel("document:shallow", "folder", "folder:deep65"))
	write(t, c, OpTouch, chain...)

	gate := ImpersonationGate{Engine: c}
	sam, alice := SubjectRef{Object: ObjectRef{Type: "user", ID: "sam"}}, SubjectRef{Object: ObjectRef{Type: "user", ID: "alice"}}
	for _, tc := range []struct {
		resource, permission string
		want                 bool
	}{
		{"organization:ca", "access", true}, // the organization and its subtree
		{"organization:cc", "access", true},
		{"document:a", "view", true},
		{"document:sub", "view", true},
		{"document:in-folder", "view", true},
		{"document:shared-in", "view", true},
		{"document:shallow", "view", true},
		{"organization:ra", "access", false}, // its parent, another tenant
		{"organization:cb", "access", false},
		{"document:up", "view", false},
		{"document:b", "view", false},
		{"document:in-b-folder", "view", false},
		{"document:shared-out", "view", false}, // hangs from another tenant too
		{"document:loose", "view", false},      // unknown anchor
		{"document:dual", "view", false},       // ambiguous tree
		{"document:cycle", "view", false},
		{"document:deep", "view", false}, // past the walk's bound
		{"platform:acme", "view", false}, // the platform
		{"document:a", "edit", false},    // outside its scope
	} {
		res, err := ParseObjectRef("resource", tc.resource)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gate.Live(ctx, sam, alice, res, tc.permission)
		if err != nil || got != tc.want {
			t.Errorf("Live(%s#%s) = %v, %v; want %v", tc.resource, tc.permission, got, err, tc.want)
		}
	}
	// another actor, another target
	bob := SubjectRef{Object: ObjectRef{Type: "user", ID: "bob"}}
	for _, who := range [][2]SubjectRef{{bob, alice}, {sam, bob}} {
		if got, err := gate.Live(ctx, who[0], who[1], ObjectRef{Type: "document", ID: "a"}, "view"); err != nil || got {
			t.Errorf("Live(%v as %v) = %v, %v; want false", who[0], who[1], got, err)
		}
	}
}
