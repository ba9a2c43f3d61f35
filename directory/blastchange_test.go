package directory

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// TestBlastRadiusOfDirectoryChangesEqualsTheChangeObserved: on the access
// review's random forest (reseller → customers → regions, nested groups,
// custom roles, a delegation, an impersonation) with app documents and
// folders, random directory changes (a group's roles, a move, a delegation
// revoked, memberships put and removed, group members added and removed) are
// weighed by the blast radius, then made through the directory; the triples
// predicted are exactly those that changed, observed by asking every object
// for every permission before and after. A plan leaves no trace: no audit
// event, no outbox entry.
func TestBlastRadiusOfDirectoryChangesEqualsTheChangeObserved(t *testing.T) {
	w := newAccessWorldWith(t, blastApp)
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(w.seed, w.seed+2))
	text, err := w.s.schemaText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perms := permissionsByType(t, text)
	var seed []engine.RelationshipUpdate
	for i := range 6 {
		doc := engine.ObjectRef{Type: "document", ID: fmt.Sprintf("d%d", i)}
		seed = append(seed, touchRel(rel(doc, "org", engine.SubjectRef{Object: orgRef(w.orgs[rnd.IntN(len(w.orgs))])})))
	}
	if _, err := w.eng.WriteRelationships(ctx, seed); err != nil {
		t.Fatal(err)
	}
	pickOrg := func() string { return w.orgs[rnd.IntN(len(w.orgs))] }
	roleKeys := func(org string) []string {
		roles, err := w.s.ListRoles(ctx, w.provider, org)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range roles {
			out = append(out, r.Key)
		}
		return out
	}
	members := func(org string) []Membership {
		ms, _, err := w.s.ListMembers(ctx, w.provider, org, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	groupOf := func(org string) (string, bool) {
		gs := w.groups[org]
		if len(gs) == 0 {
			return "", false
		}
		return gs[rnd.IntN(len(gs))], true
	}
	changes := []func() (DirectoryChange, bool){
		func() (DirectoryChange, bool) {
			org := pickOrg()
			g, ok := groupOf(org)
			keys := roleKeys(org)
			return DirectoryChange{AddGroupRole: &GroupRoleChange{Organization: org, Group: g, Role: keys[rnd.IntN(len(keys))]}}, ok
		},
		func() (DirectoryChange, bool) {
			org := pickOrg()
			g, ok := groupOf(org)
			if !ok {
				return DirectoryChange{}, false
			}
			grp, err := w.s.GetGroup(ctx, w.provider, org, g)
			if err != nil {
				t.Fatal(err)
			}
			if len(grp.Roles) == 0 {
				return DirectoryChange{}, false
			}
			return DirectoryChange{RemoveGroupRole: &GroupRoleChange{Organization: org, Group: g, Role: grp.Roles[rnd.IntN(len(grp.Roles))]}}, true
		},
		func() (DirectoryChange, bool) {
			parent := ""
			if rnd.IntN(4) > 0 {
				parent = pickOrg()
			}
			return DirectoryChange{MoveOrganization: &MoveChange{Organization: pickOrg(), Parent: &parent}}, true
		},
		func() (DirectoryChange, bool) {
			var live []string
			for _, org := range w.orgs {
				ds, err := w.s.ListDelegations(ctx, w.provider, org)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range ds {
					if d.Status == store.DelegationActive {
						live = append(live, d.ID)
					}
				}
			}
			if len(live) == 0 {
				return DirectoryChange{}, false
			}
			return DirectoryChange{RevokeDelegation: &DelegationChange{Delegation: live[rnd.IntN(len(live))]}}, true
		},
		func() (DirectoryChange, bool) {
			org := pickOrg()
			keys := roleKeys(org)
			statuses := []string{"", "", store.StatusSuspended, store.StatusActive}
			return DirectoryChange{PutMember: &MemberChange{Organization: org, User: w.users[rnd.IntN(len(w.users))],
				Roles: pick(rnd, keys, 1+rnd.IntN(2)), Status: statuses[rnd.IntN(len(statuses))]}}, true
		},
		func() (DirectoryChange, bool) {
			org := pickOrg()
			ms := members(org)
			if len(ms) == 0 {
				return DirectoryChange{}, false
			}
			return DirectoryChange{RemoveMember: &MemberChange{Organization: org, User: ms[rnd.IntN(len(ms))].User}}, true
		},
		func() (DirectoryChange, bool) {
			org := pickOrg()
			g, ok := groupOf(org)
			ms := members(org)
			if !ok || len(ms) == 0 {
				return DirectoryChange{}, false
			}
			member := "user:" + ms[rnd.IntN(len(ms))].User
			if other, _ := groupOf(org); rnd.IntN(3) == 0 && other != g {
				member = "group:" + other
			}
			return DirectoryChange{AddGroupMember: &GroupMemberChange{Organization: org, Group: g, Member: member}}, true
		},
		func() (DirectoryChange, bool) {
			org := pickOrg()
			g, ok := groupOf(org)
			if !ok {
				return DirectoryChange{}, false
			}
			gm, err := w.s.ListGroupMembers(ctx, w.provider, org, g)
			if err != nil {
				t.Fatal(err)
			}
			if len(gm) == 0 {
				return DirectoryChange{}, false
			}
			m := gm[rnd.IntN(len(gm))]
			return DirectoryChange{RemoveGroupMember: &GroupMemberChange{Organization: org, Group: g, Member: m.Type + ":" + m.ID}}, true
		},
	}
	// what a plan must leave untouched: every audit event, every relationship
	trace := func() string {
		var events []audit.Event
		if err := w.s.read(ctx, func(tx store.Tx) error {
			var err error
			events, _, err = tx.ListAudit(ctx, store.AuditFilter{AllOrgs: true, Limit: 100000})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var rels []string
		for typ := range perms {
			found, err := engine.ReadAll(ctx, w.eng, engine.RelationshipFilter{ResourceType: typ}, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range found {
				rels = append(rels, r.String())
			}
		}
		slices.Sort(rels)
		return fmt.Sprint(len(events), rels)
	}
	nonEmpty, made := 0, 0
	order := rnd.Perm(len(changes)) // six of the eight forms per seed, lean under -race
	for round := 0; round < 30 && made < 6; round++ {
		c, ok := changes[order[made%len(order)]]()
		if !ok {
			continue
		}
		was := trace()
		br, err := w.s.BlastRadiusOf(ctx, w.provider, c)
		var rule *trellis.RuleError
		var invalid *trellis.ValidationError
		if errors.As(err, &rule) || errors.As(err, &invalid) || errors.Is(err, trellis.ErrConflict) {
			// the change is refused (a cycle, too deep, not a member, owner on a group…): so is making it
			if err2 := w.s.makeChange(ctx, w.provider, c); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("round %d (seed %d): %s planned: %v; made: %v", round, w.seed, c.form(), err, err2)
			}
			continue
		} else if err != nil {
			t.Fatalf("round %d (seed %d): blast radius of %s: %v", round, w.seed, c.form(), err)
		}
		if trace() != was {
			t.Fatalf("round %d: planning %s wrote audit events or relationships", round, c.form())
		}
		if br.Truncated || br.Totals.Outside != 0 {
			t.Fatalf("round %d: the provider's blast radius is truncated or has outside triples: %+v", round, br.Totals)
		}
		var predicted []string
		for _, x := range br.Gained {
			predicted = append(predicted, triple(true, x.Subject, x.Resource, x.Permission))
		}
		for _, x := range br.Lost {
			predicted = append(predicted, triple(false, x.Subject, x.Resource, x.Permission))
		}
		before := observeAll(t, w.eng, perms, nil)
		if err := w.s.makeChange(ctx, w.provider, c); err != nil {
			t.Fatalf("round %d (seed %d): %s planned, then refused: %v", round, w.seed, c.form(), err)
		}
		observed := observedChange(before, observeAll(t, w.eng, perms, nil))
		slices.Sort(observed)
		slices.Sort(predicted)
		if !slices.Equal(observed, predicted) {
			t.Fatalf("round %d (seed %d): %s %+v\npredicted %v\nobserved  %v", round, w.seed, c.form(), c, predicted, observed)
		}
		made++
		if len(observed) > 0 {
			nonEmpty++
		}
		t.Logf("round %d: %s: %d triples changed; %d objects compared, %d relationships loaded", round, c.form(), len(observed), br.Totals.Objects, br.Totals.Relationships)
	}
	if made < 5 || nonEmpty < 2 {
		t.Fatalf("%d changes made, %d of them granted or revoked anything: too poor to prove anything", made, nonEmpty)
	}
}
