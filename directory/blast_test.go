package directory

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"

	"github.com/trellis-iam/trellis/engine"
)

const blastApp = `definition folder {
	relation org: organization
	relation parent: folder
	relation viewer: user | group#member
	permission view = viewer + org->access + parent->view
}

definition document {
	relation org: organization
	relation folder: folder
	relation viewer: user | user with expiration | group#member
	relation banned: user
	permission view = (viewer + org->access + folder->view) - banned
	permission edit = org->manage
}`

// TestBlastRadiusEqualsTheChangeObserved is the blast radius's property test:
// on a random forest with app documents and folders, random changes (group
// memberships, admins, viewers, bans, a document's folder or organization,
// deletions of any stored relationship, system ones included) are weighed by
// the blast radius, then applied; the triples it predicted are exactly those
// that changed, observed by asking every object of the graph for every
// permission before and after.
func TestBlastRadiusEqualsTheChangeObserved(t *testing.T) {
	w := newAccessWorldWith(t, blastApp)
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(w.seed, w.seed+1))
	text, err := w.s.schemaText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perms := permissionsByType(t, text)
	var groups []string
	for _, gs := range w.groups {
		groups = append(groups, gs...)
	}
	user := func() engine.SubjectRef { return subj("user", w.users[rnd.IntN(len(w.users))]) }
	viewer := func() engine.SubjectRef {
		if len(groups) > 0 && rnd.IntN(2) == 0 {
			return groupMembers(groups[rnd.IntN(len(groups))])
		}
		return user()
	}
	org := func() engine.SubjectRef { return engine.SubjectRef{Object: orgRef(w.orgs[rnd.IntN(len(w.orgs))])} }
	folder := func(i int) engine.ObjectRef { return engine.ObjectRef{Type: "folder", ID: fmt.Sprintf("f%d", i)} }
	doc := func(i int) engine.ObjectRef { return engine.ObjectRef{Type: "document", ID: fmt.Sprintf("d%d", i)} }
	var seed []engine.RelationshipUpdate
	for i := range 6 {
		seed = append(seed, touchRel(rel(folder(i), "org", org())), touchRel(rel(folder(i), "viewer", viewer())))
		if i > 0 {
			seed = append(seed, touchRel(rel(folder(i), "parent", engine.SubjectRef{Object: folder(rnd.IntN(i))})))
		}
	}
	for i := range 10 {
		seed = append(seed, touchRel(rel(doc(i), "org", org())), touchRel(rel(doc(i), "folder", engine.SubjectRef{Object: folder(rnd.IntN(6))})), touchRel(rel(doc(i), "viewer", viewer())))
	}
	if _, err := w.eng.WriteRelationships(ctx, dedupe(seed)); err != nil {
		t.Fatal(err)
	}
	changes := []func() engine.RelationshipUpdate{
		func() engine.RelationshipUpdate {
			return touchRel(rel(groupRef(groups[rnd.IntN(len(groups))]), "member", user()))
		},
		func() engine.RelationshipUpdate { return touchRel(rel(org().Object, "admin", user())) },
		func() engine.RelationshipUpdate { return touchRel(rel(org().Object, "member", viewer())) },
		func() engine.RelationshipUpdate { return touchRel(rel(doc(rnd.IntN(12)), "viewer", viewer())) },
		func() engine.RelationshipUpdate { return touchRel(rel(doc(rnd.IntN(10)), "banned", user())) },
		func() engine.RelationshipUpdate { return touchRel(rel(doc(rnd.IntN(12)), "org", org())) },
		func() engine.RelationshipUpdate {
			return touchRel(rel(doc(rnd.IntN(10)), "folder", engine.SubjectRef{Object: folder(rnd.IntN(6))}))
		},
		func() engine.RelationshipUpdate { // delete any stored relationship
			types := []string{"organization", "group", "role_binding", "folder", "document", "platform"}
			rels, err := engine.ReadAll(ctx, w.eng, engine.RelationshipFilter{ResourceType: types[rnd.IntN(len(types))]}, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := rels[rnd.IntN(len(rels))]
			return engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r}
		},
	}
	nonEmpty := 0
	for round := range 6 {
		var updates []engine.RelationshipUpdate
		for range 1 + rnd.IntN(3) {
			updates = append(updates, changes[rnd.IntN(len(changes))]())
		}
		updates = dedupe(updates)
		var predicted []string
		stats, err := engine.Blast(ctx, w.eng, text, updates, engine.BlastLimits{}, func(gained bool, c engine.AccessChange) error {
			predicted = append(predicted, triple(gained, c.Subject.String(), c.Resource.String(), c.Permission))
			return nil
		})
		if err != nil {
			t.Fatalf("round %d (seed %d): blast radius of %v: %v", round, w.seed, updates, err)
		}
		br, err := w.s.BlastRadius(ctx, w.provider, updates)
		if err != nil {
			t.Fatal(err)
		}
		if br.Totals.Gained+br.Totals.Lost != len(predicted) || br.Totals.Outside != 0 {
			t.Fatalf("round %d: the service's totals %+v, the engine's %d triples", round, br.Totals, len(predicted))
		}
		objects := map[engine.ObjectRef]bool{}
		for _, u := range updates {
			objects[u.Relationship.Resource] = true
		}
		before := observeAll(t, w.eng, perms, objects)
		if _, err := w.eng.WriteRelationships(ctx, updates); err != nil {
			t.Fatal(err)
		}
		observed := observedChange(before, observeAll(t, w.eng, perms, objects))
		observedPerms := len(before)
		slices.Sort(observed)
		slices.Sort(predicted)
		if !slices.Equal(observed, predicted) {
			t.Fatalf("round %d (seed %d): updates %v\npredicted %v\nobserved  %v", round, w.seed, updates, predicted, observed)
		}
		if len(observed) > 0 {
			nonEmpty++
		}
		t.Logf("round %d: %d updates, %d triples changed; %d objects compared, %d relationships loaded (of %d object permissions in the graph)", round, len(updates), len(observed), stats.Objects, stats.Relationships, observedPerms)
	}
	if nonEmpty < 2 {
		t.Fatalf("only %d changes granted or revoked anything: too poor to prove anything", nonEmpty)
	}
}

// permissionsByType lists each definition's permissions.
func permissionsByType(t *testing.T, text string) map[string][]string {
	t.Helper()
	cs, err := compiler.Compile(compiler.InputSchema{Source: input.Source("t"), SchemaString: text}, compiler.AllowUnprefixedObjectType())
	if err != nil {
		t.Fatal(err)
	}
	perms := map[string][]string{}
	for _, d := range cs.ObjectDefinitions {
		for _, r := range d.GetRelation() {
			if r.GetUsersetRewrite() != nil {
				perms[d.GetName()] = append(perms[d.GetName()], r.GetName())
			}
		}
	}
	return perms
}

// observeAll asks every object of the graph with permissions (and those of
// extra) for each permission: "object permission" → its users.
func observeAll(t *testing.T, eng engine.Engine, perms map[string][]string, extra map[engine.ObjectRef]bool) map[string][]string {
	t.Helper()
	ctx := t.Context()
	objects := maps.Clone(extra)
	if objects == nil {
		objects = map[engine.ObjectRef]bool{}
	}
	for typ := range perms {
		rels, err := engine.ReadAll(ctx, eng, engine.RelationshipFilter{ResourceType: typ}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rels {
			objects[r.Resource] = true
		}
	}
	out := map[string][]string{}
	for o := range objects {
		for _, p := range perms[o.Type] {
			users, err := engine.UsersWith(ctx, eng, o, p)
			if err != nil {
				t.Fatal(err)
			}
			out[o.String()+" "+p] = users
		}
	}
	return out
}

// observedChange lists the triples gained and lost between two observations.
func observedChange(before, after map[string][]string) []string {
	var observed []string
	keys := maps.Clone(before)
	maps.Copy(keys, after)
	for k := range keys {
		var res, p string
		fmt.Sscan(k, &res, &p)
		for _, u := range after[k] {
			if !slices.Contains(before[k], u) {
				observed = append(observed, triple(true, "user:"+u, res, p))
			}
		}
		for _, u := range before[k] {
			if !slices.Contains(after[k], u) {
				observed = append(observed, triple(false, "user:"+u, res, p))
			}
		}
	}
	return observed
}

func touchRel(r engine.Relationship) engine.RelationshipUpdate {
	return engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r}
}

func triple(gained bool, subject, resource, perm string) string {
	side := "lost"
	if gained {
		side = "gained"
	}
	return side + " " + subject + " " + perm + " " + resource
}
