package directory

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// An organization's lineage relation holds its ancestors as the rows say,
// through creates and moves; govern and suspension follow it; a lineage the
// rows do not show is refused; EnsureLineage restores what the graph lacks
// (an upgrade from a release that did not write it) and nothing more.
func TestLineageMirrorsTheParentRows(t *testing.T) {
	ctx := t.Context()
	eng := systemEngine(t)
	s, err := New(Deps{Store: memory.New(), Graph: eng}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	prov := Provider("admin")
	mk := func(slug, parent string) string {
		t.Helper()
		o, err := s.CreateOrganization(ctx, prov, CreateOrg{Name: slug, Slug: slug, Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	user := func(name string) Principal {
		t.Helper()
		u, err := s.CreateUser(ctx, prov, CreateUser{Email: name + "@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		return Principal{Kind: KindUser, ID: u.ID}
	}
	lineage := func(id string) []string {
		t.Helper()
		rels, err := engine.ReadAll(ctx, eng, engine.RelationshipFilter{ResourceType: "organization", ResourceID: id, Relation: "lineage"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rels {
			out = append(out, r.Subject.Object.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	holds := func(org, perm string, p Principal) bool {
		t.Helper()
		ok, err := s.holds(ctx, orgRef(org), perm, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	r1, r2 := mk("r1", ""), mk("r2", "")
	c1, c2 := mk("c1", r1), mk("c2", r2)
	a1, a2 := user("a1"), user("a2")
	for _, m := range []struct {
		org string
		p   Principal
	}{{r1, a1}, {r2, a2}} {
		if _, _, err := s.PutMember(ctx, prov, m.org, m.p.ID, PutMember{Roles: []string{"admin"}}); err != nil {
			t.Fatal(err)
		}
	}
	// a customer admin creates the region: its lineage is weighed against the rows and written
	g, err := s.CreateOrganization(ctx, a1, CreateOrg{Name: "g", Slug: "g", Parent: c1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lineage(g.ID), sorted(r1, c1); !slices.Equal(got, want) {
		t.Fatalf("lineage of a region under c1 under r1 = %v, want %v", got, want)
	}
	if got := lineage(r1); got != nil {
		t.Fatalf("a top-level organization has lineage %v", got)
	}
	if !holds(g.ID, permManage, a1) || holds(g.ID, permManage, a2) {
		t.Fatal("r1's admin does not manage the region under it, or r2's does")
	}
	suspended := "suspended"
	if _, err := s.UpdateOrganization(ctx, prov, c1, OrgPatch{Status: &suspended}); err != nil {
		t.Fatal(err)
	}
	if holds(g.ID, permManage, a1) || !holds(g.ID, permGovern, a1) {
		t.Fatal("a suspended customer's region is still managed, or no longer governed, by the reseller's admin")
	}
	active := "active"
	if _, err := s.UpdateOrganization(ctx, prov, c1, OrgPatch{Status: &active}); err != nil {
		t.Fatal(err)
	}

	// a move re-parents the whole subtree's lineage
	if _, err := s.MoveOrganization(ctx, prov, c1, MoveOrg{Parent: &c2}); err != nil {
		t.Fatal(err)
	}
	if got, want := lineage(g.ID), sorted(r2, c2, c1); !slices.Equal(got, want) {
		t.Fatalf("lineage of the region after its customer moved under c2 = %v, want %v", got, want)
	}
	if got, want := lineage(c1), sorted(r2, c2); !slices.Equal(got, want) {
		t.Fatalf("lineage of the moved customer = %v, want %v", got, want)
	}
	if holds(g.ID, permManage, a1) || !holds(g.ID, permManage, a2) {
		t.Fatal("after the move the old reseller's admin still manages the region, or the new one does not")
	}

	// a lineage the rows do not show is refused, whoever writes it
	for _, u := range []engine.RelationshipUpdate{
		{Operation: engine.OpTouch, Relationship: lineageTuples(g.ID, []string{r1})[0]},  // not an ancestor
		{Operation: engine.OpDelete, Relationship: lineageTuples(g.ID, []string{c2})[0]}, // still an ancestor
	} {
		err := s.store.InTx(ctx, func(tx store.Tx) error {
			o := &op{p: a2, now: time.Now(), action: "test"}
			o.updates = []engine.RelationshipUpdate{u}
			return s.authorizeEffects(ctx, tx, o)
		})
		if err == nil || !strings.Contains(err.Error(), "does not match the organization rows") {
			t.Fatalf("%s %s: %v, want it refused", u.Operation, u.Relationship, err)
		}
	}

	// a graph without lineage (written by an earlier release) gets it back at start
	all, err := engine.ReadAll(ctx, eng, engine.RelationshipFilter{ResourceType: "organization", Relation: "lineage"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var drop []engine.RelationshipUpdate
	for _, r := range all {
		drop = append(drop, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
	}
	if _, err := eng.WriteRelationships(ctx, drop); err != nil {
		t.Fatal(err)
	}
	if holds(g.ID, permManage, a2) {
		t.Fatal("without lineage the reseller's admin still manages the region: govern does not read it")
	}
	n, err := s.EnsureLineage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != len(all) || n != 6 { // c1: r2, c2; c2: r2; g: r2, c2, c1
		t.Fatalf("EnsureLineage wrote %d relationships; %d were dropped, 6 expected", n, len(all))
	}
	if got, want := lineage(g.ID), sorted(r2, c2, c1); !slices.Equal(got, want) {
		t.Fatalf("lineage of the region after EnsureLineage = %v, want %v", got, want)
	}
	if !holds(g.ID, permManage, a2) {
		t.Fatal("after EnsureLineage the reseller's admin does not manage the region")
	}
	if n, err := s.EnsureLineage(context.Background()); err != nil || n != 0 {
		t.Fatalf("a second EnsureLineage wrote %d (%v), want nothing", n, err)
	}
}
