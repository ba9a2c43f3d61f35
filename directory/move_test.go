package directory

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

var moveSeed = flag.Uint64("move.seed", 0, "seed of TestMoveImpactOnlyReadsWhatTheSubtreeDependsOn (0: random)")

// TestMoveImpactOnlyReadsWhatTheSubtreeDependsOn proves the bounded move
// preview: on random forests of tenants (nested organizations, members with
// built-in and custom roles of every level, groups nested in groups, service
// accounts, delegations to users, groups of other tenants and partner
// organizations' admins, expiring grants, suspensions, platform staff), for
// random moves, the impact computed from the relationships the moved subtree
// depends on (engine.ReadReachable) equals the impact computed from every
// system relationship of every tenant, as the preview did before. Moves are
// then applied at random, and the graph afterwards holds exactly what the
// preview announced. Replay a failure with -move.seed.
func TestMoveImpactOnlyReadsWhatTheSubtreeDependsOn(t *testing.T) {
	seed := *moveSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./directory -run TestMoveImpactOnlyReadsWhatTheSubtreeDependsOn -move.seed %d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, seed))
	ctx := t.Context()
	eng := systemEngine(t)
	st := memory.New()
	s, err := New(Deps{Store: st, Graph: eng}, Config{MaxDepth: 6, MovePreviewTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f := newForest(t, s, eng, rnd)

	moves, nonEmpty, applied, loaded, stored := 0, 0, 0, 0, 0
	for attempt := 0; moves < 24 && attempt < 200; attempt++ {
		org := f.orgs[rnd.IntN(len(f.orgs))]
		parent := ""
		if rnd.IntN(5) > 0 {
			parent = f.orgs[rnd.IntN(len(f.orgs))]
		}
		in := MoveOrg{Parent: &parent}
		var plan movePlan
		if err := s.read(ctx, func(tx store.Tx) error {
			plan, err = s.planMove(ctx, tx, f.provider, org, in)
			return err
		}); err != nil {
			continue // a cycle or too deep: not a move
		}
		moves++
		full, all := f.fullImpact(plan)
		apply := rnd.IntN(2) == 0
		var before map[string][]string
		var bounded Impact
		if apply { // the move computes its own (bounded) impact
			before = f.holders(plan.orgs)
			res, err := s.MoveOrganization(ctx, f.provider, org, in)
			if err != nil {
				t.Fatalf("move %s under %q: %v", org, parent, err)
			}
			bounded = res.Impact
			applied++
		} else if bounded, err = s.impact(ctx, plan); err != nil {
			t.Fatalf("move %s under %q: bounded impact: %v", org, parent, err)
		}
		if bounded.Totals.Relationships > all {
			t.Errorf("move %s under %q: loaded %d relationships, more than the %d system relationships stored", org, parent, bounded.Totals.Relationships, all)
		}
		loaded += bounded.Totals.Relationships
		stored += all
		bounded.Totals.Relationships, full.Totals.Relationships = 0, 0
		if !reflect.DeepEqual(bounded, full) {
			t.Fatalf("move %s under %q (seed %d): the bounded impact differs from the full graph's\nbounded: %+v\nfull:    %+v", org, parent, seed, bounded, full)
		}
		if len(full.Gained)+len(full.Lost) > 0 {
			nonEmpty++
		}
		if !apply {
			continue
		}
		want := before
		for _, c := range bounded.Gained {
			want[c.Organization+" "+c.Permission] = append(want[c.Organization+" "+c.Permission], c.Subject[len("user:"):])
		}
		for _, c := range bounded.Lost {
			k := c.Organization + " " + c.Permission
			want[k] = slices.DeleteFunc(want[k], func(u string) bool { return "user:"+u == c.Subject })
		}
		for k := range want {
			slices.Sort(want[k])
			if len(want[k]) == 0 {
				delete(want, k)
			}
		}
		if got := f.holders(plan.orgs); !reflect.DeepEqual(got, want) {
			t.Fatalf("move %s under %q (seed %d): after the move the graph holds\n%v\nthe preview announced\n%v", org, parent, seed, got, want)
		}
	}
	t.Logf("%d moves compared (%d with an impact), %d applied; %d relationships loaded in all, where the full graph held %d", moves, nonEmpty, applied, loaded, stored)
	if moves < 10 || nonEmpty < 3 {
		t.Fatalf("only %d moves, %d with an impact: the forest is too poor to prove anything", moves, nonEmpty)
	}
}

// forest is a random set of tenants built through the directory, plus
// delegation-shaped and platform relationships written to the graph.
type forest struct {
	t        *testing.T
	s        *Service
	eng      engine.Engine
	provider Principal
	orgs     []string
	users    []string
	groups   map[string][]string // org → its groups
}

func newForest(t *testing.T, s *Service, eng engine.Engine, rnd *rand.Rand) *forest {
	ctx := t.Context()
	f := &forest{t: t, s: s, eng: eng, provider: Provider("admin"), groups: map[string][]string{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		u, err := s.CreateUser(ctx, f.provider, CreateUser{Email: fmt.Sprintf("u%d@example.com", i)})
		must(err)
		f.users = append(f.users, u.ID)
	}
	keys := []string{"ops", "helper", "auditor"}
	for i := range 14 {
		parent := ""
		if i >= 4 { // four tenants, the rest below them
			parent = f.orgs[rnd.IntN(len(f.orgs))]
		}
		o, err := s.CreateOrganization(ctx, f.provider, CreateOrg{Name: fmt.Sprintf("Org %d", i), Slug: fmt.Sprintf("org-%d", i), Parent: parent})
		if err != nil {
			continue // too deep
		}
		f.orgs = append(f.orgs, o.ID)
		if rnd.IntN(2) == 0 { // a custom role; keys repeat across levels, so nearer ones shadow
			perms := pick(rnd, s.catalogue, 1+rnd.IntN(2))
			_, err := s.CreateRole(ctx, f.provider, o.ID, RoleInput{Key: keys[rnd.IntN(len(keys))], Permissions: &perms})
			if err != nil && !isConflict(err) {
				t.Fatal(err)
			}
		}
	}
	usable := func(org string) []string { // role keys usable in org
		roles, err := s.ListRoles(ctx, f.provider, org)
		must(err)
		var out []string
		for _, r := range roles {
			if r.Key != RoleOwner {
				out = append(out, r.Key)
			}
		}
		return out
	}
	for _, org := range f.orgs {
		for _, u := range pick(rnd, f.users, 1+rnd.IntN(3)) {
			roles := pick(rnd, usable(org), 1+rnd.IntN(2))
			if rnd.IntN(6) == 0 {
				roles = append(roles, RoleOwner)
			}
			status := ""
			if rnd.IntN(8) == 0 {
				status = "suspended"
			}
			_, _, err := s.PutMember(ctx, f.provider, org, u, PutMember{Roles: roles, Status: status})
			must(err)
		}
		members, _, err := s.ListMembers(ctx, f.provider, org, 100, "")
		must(err)
		for range rnd.IntN(3) {
			roles := pick(rnd, usable(org), rnd.IntN(2))
			g, err := s.CreateGroup(ctx, f.provider, org, GroupInput{Name: ptr(fmt.Sprintf("g%d", rnd.IntN(1000))), Roles: &roles})
			if isConflict(err) {
				continue
			}
			must(err)
			for _, m := range pick(rnd, members, rnd.IntN(3)) {
				_, err := s.PutGroupMember(ctx, f.provider, org, g.ID, "user:"+m.User)
				must(err)
			}
			if prev := f.groups[org]; len(prev) > 0 && rnd.IntN(2) == 0 { // nested
				_, err := s.PutGroupMember(ctx, f.provider, org, g.ID, "group:"+prev[rnd.IntN(len(prev))])
				must(err)
			}
			f.groups[org] = append(f.groups[org], g.ID)
		}
		if rnd.IntN(3) == 0 {
			roles := pick(rnd, usable(org), 1)
			_, err := s.CreateServiceAccount(ctx, f.provider, org, ServiceAccountInput{Name: ptr("robot"), Roles: &roles})
			must(err)
		}
	}
	// delegation-shaped grants, across tenants too, some expiring
	var ups []engine.RelationshipUpdate
	scopes := []string{"admin", "members_admin", "roles_local", "audit_viewer", "billing_local", "sso_admin"}
	later := time.Now().Add(time.Hour)
	for range 16 {
		i := 1 + rnd.IntN(len(f.orgs)-1)
		// partners are created earlier: organization#admin subject sets never form a cycle
		org, other := f.orgs[i], f.orgs[rnd.IntN(i)]
		var sub engine.SubjectRef
		switch rnd.IntN(4) {
		case 0:
			sub = subj("user", f.users[rnd.IntN(len(f.users))])
		case 1:
			if gs := f.groups[other]; len(gs) > 0 {
				sub = groupMembers(gs[rnd.IntN(len(gs))])
			} else {
				sub = subj("user", f.users[rnd.IntN(len(f.users))])
			}
		case 2:
			sub = engine.SubjectRef{Object: orgRef(other), Relation: "admin"}
		default:
			sub = engine.SubjectRef{Object: orgRef(other), Relation: "active_admin"}
		}
		relation := scopes[rnd.IntN(len(scopes))]
		if relation == "admin" && sub.Relation == "active_admin" {
			relation = "members_admin"
		}
		r := rel(orgRef(org), relation, sub)
		if rnd.IntN(3) == 0 {
			r.ExpiresAt = &later
		}
		ups = append(ups, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
	}
	p := engine.ObjectRef{Type: "platform", ID: s.cfg.Platform}
	ups = append(ups,
		engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel(p, "admin", subj("user", f.users[0]))},
		engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel(p, "support", subj("user", f.users[1]))},
		engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel(p, "auditor", subj("user", f.users[2]))})
	_, err := eng.WriteRelationships(ctx, dedupe(ups))
	must(err)
	for _, org := range pick(rnd, f.orgs, 2) {
		_, err := s.UpdateOrganization(ctx, f.provider, org, OrgPatch{Status: ptr("suspended")})
		must(err)
	}
	return f
}

// fullImpact is the impact computed as the preview did before it was
// bounded: a scratch engine holding every system relationship of every tenant.
// It returns how many it loaded.
func (f *forest) fullImpact(plan movePlan) (Impact, int) {
	f.t.Helper()
	ctx := f.t.Context()
	var out Impact
	out.Gained, out.Lost = []AccessChange{}, []AccessChange{}
	out.Totals.Organizations = len(plan.orgs)
	text, err := f.s.schemaText(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var rels []engine.Relationship
	for _, typ := range []string{"platform", "organization", "group", "role", "role_binding", "service_account"} {
		found, err := engine.ReadAll(ctx, f.eng, engine.RelationshipFilter{ResourceType: typ}, 0)
		if err != nil {
			f.t.Fatal(err)
		}
		rels = append(rels, found...)
	}
	if err := f.s.compare(ctx, &out, plan.orgs, text, rels, plan.updates); err != nil {
		f.t.Fatal(err)
	}
	return out, len(rels)
}

// holders maps "org permission" to the users holding it in the graph now.
func (f *forest) holders(orgs []store.Org) map[string][]string {
	f.t.Helper()
	out := map[string][]string{}
	for _, o := range orgs {
		for _, perm := range f.s.catalogue {
			users, err := usersWith(f.t.Context(), f.eng, o.ID, perm)
			if err != nil {
				f.t.Fatal(err)
			}
			if len(users) > 0 {
				out[o.ID+" "+perm] = users
			}
		}
	}
	return out
}

func pick[T any](rnd *rand.Rand, from []T, n int) []T {
	out := slices.Clone(from)
	rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(n, len(out))]
}

func ptr[T any](v T) *T { return &v }

func isConflict(err error) bool { return errors.Is(err, trellis.ErrConflict) }
