package directory

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/history"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// TestAccessAtEqualsTheAnswerRecordedLive: the changelog recorder follows the
// graph while a membership is removed (directory, deletes by filter), a group
// changes (a nested group joins, a member leaves), a raw write adds a viewer
// and an expiring grant lapses; at each step the live answers (who can view
// the document, may one user view it) are recorded with the time. Replayed
// from the changelog, the answers as of each time equal those recorded live.
func TestAccessAtEqualsTheAnswerRecordedLive(t *testing.T) {
	ctx := t.Context()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(ctx, blastApp); err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	s, err := New(Deps{Store: st, Graph: eng}, Config{MovePreviewTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rec := &history.Recorder{Graph: eng, Store: st}
	pr := Provider("admin")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	reseller, err := s.CreateOrganization(ctx, pr, CreateOrg{Name: "Reseller", Slug: "reseller"})
	must(err)
	customer, err := s.CreateOrganization(ctx, pr, CreateOrg{Name: "Customer", Slug: "customer", Parent: reseller.ID})
	must(err)
	users := []string{}
	for _, e := range []string{"ann@x.example", "bob@x.example", "cy@x.example", "dee@x.example", "eve@x.example"} {
		u, err := s.CreateUser(ctx, pr, CreateUser{Email: e})
		must(err)
		users = append(users, u.ID)
	}
	ann, bob, cy, dee, eve := users[0], users[1], users[2], users[3], users[4]
	// the document is the reseller's: ann views it as a member there; bob and
	// cy, members of the customer, only through the groups that view it
	_, _, err = s.PutMember(ctx, pr, reseller.ID, ann, PutMember{Roles: []string{RoleMember}})
	must(err)
	for _, u := range []string{bob, cy} {
		_, _, err := s.PutMember(ctx, pr, customer.ID, u, PutMember{Roles: []string{RoleMember}})
		must(err)
	}
	outer, err := s.CreateGroup(ctx, pr, customer.ID, GroupInput{Name: ptr("outer")})
	must(err)
	inner, err := s.CreateGroup(ctx, pr, customer.ID, GroupInput{Name: ptr("inner")})
	must(err)
	_, err = s.PutGroupMember(ctx, pr, customer.ID, inner.ID, "user:"+cy)
	must(err)
	_, err = s.PutGroupMember(ctx, pr, customer.ID, outer.ID, "user:"+bob)
	must(err)
	doc := engine.ObjectRef{Type: "document", ID: "plan"}
	_, err = eng.WriteRelationships(ctx, []engine.RelationshipUpdate{
		touchRel(rel(doc, "org", engine.SubjectRef{Object: orgRef(reseller.ID)})),
		touchRel(rel(doc, "viewer", groupMembers(outer.ID))),
	})
	must(err)

	type moment struct {
		name  string
		at    time.Time
		users []string
		ann   bool // may ann view
		cy    bool
	}
	var moments []moment
	record := func(name string) {
		t.Helper()
		must(rec.Sync(ctx))
		m := moment{name: name, at: time.Now()}
		var err error
		m.users, err = engine.UsersWith(ctx, eng, doc, "view")
		must(err)
		for i, u := range []string{ann, cy} {
			r, err := eng.Check(ctx, engine.CheckRequest{Resource: doc, Permission: "view", Subject: subj("user", u), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
			must(err)
			*[]*bool{&m.ann, &m.cy}[i] = r.Allowed()
		}
		moments = append(moments, m)
	}
	record("start")
	must(s.RemoveMember(ctx, pr, reseller.ID, ann))
	record("membership removed")
	_, err = s.PutGroupMember(ctx, pr, customer.ID, outer.ID, "group:"+inner.ID)
	must(err)
	must(s.RemoveGroupMember(ctx, pr, customer.ID, outer.ID, "user:"+bob))
	record("group changed")
	_, err = eng.WriteRelationships(ctx, []engine.RelationshipUpdate{touchRel(rel(doc, "viewer", subj("user", dee)))})
	must(err)
	record("raw write")
	lapse := time.Now().Add(2 * time.Second) // past the recording of the next step, even on a loaded machine under -race
	grant := rel(doc, "viewer", subj("user", eve))
	grant.ExpiresAt = &lapse
	_, err = eng.WriteRelationships(ctx, []engine.RelationshipUpdate{touchRel(grant)})
	must(err)
	record("expiring grant")
	// wait for the wall clock (SpiceDB's and the replay's) to pass the expiry
	<-time.After(time.Until(lapse) + 20*time.Millisecond)
	// SpiceDB judges expiry at the revision read: an unrelated write makes one
	_, err = eng.WriteRelationships(ctx, []engine.RelationshipUpdate{touchRel(rel(engine.ObjectRef{Type: "folder", ID: "misc"}, "org", engine.SubjectRef{Object: orgRef(customer.ID)}))})
	must(err)
	record("grant expired")

	if !slices.Contains(moments[0].users, ann) || slices.Contains(moments[1].users, ann) ||
		!slices.Contains(moments[1].users, bob) || slices.Contains(moments[2].users, bob) || moments[1].cy || !moments[2].cy ||
		!slices.Contains(moments[3].users, dee) || !slices.Contains(moments[4].users, eve) || slices.Contains(moments[5].users, eve) {
		t.Fatalf("the live answers do not show the steps: %+v", moments)
	}
	for _, m := range moments {
		got, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", Subject: &engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: ann}}, At: m.at})
		must(err)
		var ids []string
		for _, u := range got.Users {
			ids = append(ids, u[len("user:"):])
		}
		if !slices.Equal(ids, m.users) || *got.Allowed != m.ann {
			t.Fatalf("%s: as of %s the replay says %v (ann %v), live it was %v (ann %v)", m.name, m.at, ids, *got.Allowed, m.users, m.ann)
		}
		cyAt, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", Subject: &engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: cy}}, At: m.at})
		must(err)
		if *cyAt.Allowed != m.cy {
			t.Fatalf("%s: cy as of %s: replay %v, live %v", m.name, m.at, *cyAt.Allowed, m.cy)
		}
		if got.SchemaVersion == "" || got.Totals.Changes == 0 {
			t.Fatalf("%s: %+v", m.name, got)
		}
	}
	// the removal is recorded as the tuples removed, not a filter
	var changes []store.RelationshipChange
	must(st.Read(ctx, func(tx store.Tx) error {
		changes, err = tx.ChangesUntil(ctx, time.Now())
		return err
	}))
	removed := false
	for _, c := range changes {
		for _, u := range c.Updates {
			r := u.Relationship
			removed = removed || (u.Operation == engine.OpDelete && r.Resource == orgRef(reseller.ID) && r.Relation == "member" && r.Subject == subj("user", ann))
		}
	}
	if !removed {
		t.Fatal("the membership removal is not in the changelog as the tuple it deleted")
	}
	// the replay reads the changes of the objects it reaches (the index), not all
	last, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", At: moments[5].at})
	must(err)
	if last.Totals.Changes == 0 || last.Totals.Changes >= len(changes) {
		t.Fatalf("the last replay drew on %d changes of the %d recorded: the index is not read", last.Totals.Changes, len(changes))
	}
	// before the changelog, and in the future: refused
	if _, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", At: moments[0].at.Add(-time.Hour)}); !errors.As(err, new(*trellis.RuleError)) {
		t.Fatalf("before the changelog: %v", err)
	}
	// compaction at the group change: later answers replay as before, earlier
	// times are before the changelog (422 naming at); recording goes on after it
	folded, err := history.Compact(ctx, st, moments[2].at)
	must(err)
	var after []store.RelationshipChange
	must(st.Read(ctx, func(tx store.Tx) error {
		after, err = tx.ChangesUntil(ctx, time.Now())
		return err
	}))
	if folded < 3 || len(after) != len(changes)-folded+1 || !after[0].Baseline {
		t.Fatalf("compacting %d changes through %s folded %d, leaving %d", len(changes), moments[2].at, folded, len(after))
	}
	for _, m := range moments[2:] {
		got, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", Subject: &engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: cy}}, At: m.at})
		must(err)
		var ids []string
		for _, u := range got.Users {
			ids = append(ids, u[len("user:"):])
		}
		if !slices.Equal(ids, m.users) || *got.Allowed != m.cy {
			t.Fatalf("%s, after compaction: the replay says %v (cy %v), live it was %v (cy %v)", m.name, ids, *got.Allowed, m.users, m.cy)
		}
	}
	for _, m := range moments[:2] {
		_, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", At: m.at})
		var rule *trellis.RuleError
		if !errors.As(err, &rule) || rule.Field != "at" || rule.Code != "before_history" {
			t.Fatalf("%s, compacted away: %v, want a 422 before_history naming at", m.name, err)
		}
	}
	_, err = eng.WriteRelationships(ctx, []engine.RelationshipUpdate{{Operation: engine.OpDelete, Relationship: rel(doc, "viewer", subj("user", dee))}})
	must(err)
	record("after compaction")
	got, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", At: moments[len(moments)-1].at})
	must(err)
	if slices.Contains(got.Users, "user:"+dee) || !slices.Contains(moments[len(moments)-2].users, dee) {
		t.Fatalf("a change recorded after compaction: now %v, before %v", got.Users, moments[len(moments)-2].users)
	}
	if folded, err := history.Compact(ctx, st, moments[2].at); err != nil || folded != 0 {
		t.Fatalf("compacting again at the same boundary: %d folded, %v", folded, err)
	}
	if _, err := s.AccessAt(ctx, pr, AccessAtQuery{Resource: doc, Permission: "view", At: time.Now().Add(time.Hour)}); !errors.As(err, new(*trellis.ValidationError)) {
		t.Fatalf("in the future: %v", err)
	}
}
