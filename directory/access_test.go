package directory

import (
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

var accessSeed = flag.Uint64("access.seed", 0, "seed of the access review tests (0: random)")

// accessWorld is a random forest (reseller → customers → regions, nested
// groups, custom roles, delegation-shaped grants across tenants, platform
// staff, suspensions) plus a delegation made through the directory and a live
// impersonation.
type accessWorld struct {
	*forest
	s      *Service
	eng    *engine.Embedded
	seed   uint64
	actor  string // the impersonation's actor and target
	target string
}

func newAccessWorld(t *testing.T) *accessWorld { return newAccessWorldWith(t, "") }

func newAccessWorldWith(t *testing.T, app string) *accessWorld {
	t.Helper()
	seed := *accessSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -access.seed %d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, seed))
	ctx := t.Context()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(ctx, app); err != nil {
		t.Fatal(err)
	}
	s, err := New(Deps{Store: memory.New(), Graph: eng}, Config{MaxDepth: 6, MovePreviewTimeout: 5 * time.Minute}) // the bound is not under test: a loaded CI machine must not trip it
	if err != nil {
		t.Fatal(err)
	}
	w := &accessWorld{forest: newForest(t, s, eng, rnd), s: s, eng: eng, seed: seed}
	// an inherited path in every world (the random forest may have none, or
	// only under suspended ancestors): a tenant of its own with a region, and
	// a user of its own administering the tenant
	heir, err := s.CreateUser(ctx, w.provider, CreateUser{Email: "heir@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	top, err := s.CreateOrganization(ctx, w.provider, CreateOrg{Name: "Heirloom", Slug: "heirloom"})
	if err != nil {
		t.Fatal(err)
	}
	region, err := s.CreateOrganization(ctx, w.provider, CreateOrg{Name: "Heirloom EU", Slug: "heirloom-eu", Parent: top.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutMember(ctx, w.provider, top.ID, heir.ID, PutMember{Roles: []string{RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	w.users, w.orgs = append(w.users, heir.ID), append(w.orgs, top.ID, region.ID)
	later := time.Now().Add(2 * time.Hour)
	for _, org := range w.orgs[4:] { // a real delegation, on the first active customer that allows it
		if w.suspended(t, mustOrg(t, s, org)) {
			continue
		}
		if _, err := s.Delegate(ctx, w.provider, org, CreateDelegation{Grantee: "user:" + w.users[7], Scopes: []string{"members", "audit"}, Subtree: true, ExpiresAt: &later}); err == nil {
			break
		}
	}
	// user 1 is platform support: it may impersonate an active member anywhere
	for _, org := range w.orgs {
		members, _, err := s.ListMembers(ctx, w.provider, org, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m.Status != store.StatusActive || m.User == w.users[0] || m.User == w.users[1] || m.User == w.users[2] {
				continue
			}
			if _, err := s.Impersonate(ctx, w.provider, CreateImpersonation{Actor: "user:" + w.users[1], Target: "user:" + m.User, Organization: org, Reason: "ticket 7", Scopes: []string{"*"}}); err == nil {
				w.actor, w.target = w.users[1], m.User
				return w
			}
		}
	}
	t.Fatal("no impersonation could be started")
	return nil
}

// whoCanAll pages through WhoCan.
func (w *accessWorld) whoCanAll(t *testing.T, p Principal, res engine.ObjectRef, perm string) ([]UserAccessPaths, WhoCanTotals, error) {
	t.Helper()
	var out []UserAccessPaths
	cursor := ""
	for {
		page, err := w.s.WhoCan(t.Context(), p, WhoCanQuery{Resource: res, Permission: perm, PageSize: 4, Cursor: cursor})
		if err != nil {
			return nil, WhoCanTotals{}, err
		}
		if len(page.Users) > 4 {
			t.Fatalf("a page of %d users, past its size 4", len(page.Users))
		}
		out = append(out, page.Users...)
		if page.NextCursor == "" {
			return out, page.Totals, nil
		}
		cursor = page.NextCursor
	}
}

var reviewedPermissions = []string{"access", "manage_members", "view_audit"}

// TestWhoCanIsCompleteAgainstBruteForce checks every organization and group
// of a random forest: who-can lists exactly the users a check allows (every
// user asked one by one) plus the actors of live impersonations of them (the
// impersonation gate asked for every pair), each with at least one path that
// ends at the user, over pages.
func TestWhoCanIsCompleteAgainstBruteForce(t *testing.T) {
	w := newAccessWorld(t)
	ctx := t.Context()
	gate := engine.ImpersonationGate{Engine: w.eng}
	var resources []engine.ObjectRef
	for _, o := range w.orgs {
		resources = append(resources, orgRef(o))
		for _, g := range w.groups[o] {
			resources = append(resources, groupRef(g))
		}
	}
	kinds := map[string]int{}
	for _, res := range resources {
		perms := reviewedPermissions
		if res.Type == "group" {
			perms = []string{"view"}
		}
		for _, perm := range perms {
			var want []string
			for _, u := range w.users {
				r, err := w.eng.Check(ctx, engine.CheckRequest{Resource: res, Permission: perm, Subject: subj("user", u), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
				if err != nil {
					t.Fatal(err)
				}
				if r.Allowed() {
					want = append(want, u)
				}
			}
			holders := slices.Clone(want)
			for _, actor := range w.users {
				for _, target := range holders {
					if slices.Contains(want, actor) {
						break
					}
					live, err := gate.Live(ctx, subj("user", actor), subj("user", target), res, perm)
					if err != nil {
						t.Fatal(err)
					}
					if live {
						want = append(want, actor)
					}
				}
			}
			slices.Sort(want)
			got, totals, err := w.whoCanAll(t, w.provider, res, perm)
			if err != nil {
				t.Fatalf("who-can %s %s: %v", perm, res, err)
			}
			var ids []string
			for _, u := range got {
				id := strings.TrimPrefix(u.User, "user:")
				ids = append(ids, id)
				if len(u.Via) == 0 {
					t.Fatalf("who-can %s %s (seed %d): %s has no path", perm, res, w.seed, u.User)
				}
				for _, p := range u.Via {
					kinds[p.Kind]++
					if p.Outside || len(p.Steps) == 0 {
						t.Fatalf("who-can %s %s: a provider admin sees a summarized path %+v", perm, res, p)
					}
					last := p.Steps[len(p.Steps)-1].Subject
					if p.Kind == PathImpersonation {
						last = p.Steps[0].Subject // actor first
					}
					if last != u.User && last != "user:*" {
						t.Fatalf("who-can %s %s: a path of %s ends at %s: %+v", perm, res, u.User, last, p)
					}
				}
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("who-can %s %s (seed %d):\n got %v\nwant %v", perm, res, w.seed, ids, want)
			}
			if totals.Users != len(want) || totals.Outside != 0 {
				t.Fatalf("who-can %s %s: totals %+v for %d users", perm, res, totals, len(want))
			}
		}
	}
	t.Logf("paths by kind: %v", kinds)
	for _, k := range []string{PathDirect, PathInherited, PathPlatform, PathImpersonation} {
		if kinds[k] == 0 {
			t.Errorf("no path of kind %s in the whole forest: the world is too poor to prove anything", k)
		}
	}
}

// TestCustomerAuditorSeesOnlyItsSubtree: an auditor of one customer
// organization (view_audit through a custom role) asks about resources of
// its subtree and gets the users inside it, outside ones counted; resources
// elsewhere answer 404; nothing in an answer names an organization, group or
// user outside its subtree; impersonated sessions and callers without
// view_audit are refused.
func TestCustomerAuditorSeesOnlyItsSubtree(t *testing.T) {
	w := newAccessWorld(t)
	ctx := t.Context()
	// the customer: the organization with the largest subtree below a top-level one
	var customer store.Org
	var inside []store.Org
	for _, id := range w.orgs {
		var o store.Org
		var sub []store.Org
		if err := w.s.read(ctx, func(tx store.Tx) error {
			var err error
			if o, err = tx.GetOrg(ctx, id); err != nil {
				return err
			}
			sub, err = subtree(ctx, tx, o)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// a suspended organization denies everything in its subtree, view_audit
		// too: the auditor audits the active part of its subtree
		var active []store.Org
		for _, x := range sub {
			if !w.suspended(t, x) {
				active = append(active, x)
			}
		}
		if o.Parent != "" && len(active) > len(inside) {
			customer, inside = o, active
		}
	}
	if customer.ID == "" {
		t.Fatal("no customer organization")
	}
	auditor, err := w.s.CreateUser(ctx, w.provider, CreateUser{Email: "auditor@customer.example"})
	if err != nil {
		t.Fatal(err)
	}
	perms := []string{"view_audit"}
	role, err := w.s.CreateRole(ctx, w.provider, customer.ID, RoleInput{Key: "reviewer", Permissions: &perms})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.s.PutMember(ctx, w.provider, customer.ID, auditor.ID, PutMember{Roles: []string{role.Key}}); err != nil {
		t.Fatal(err)
	}
	insideOrgs := map[string]bool{}
	for _, o := range inside {
		insideOrgs[o.ID] = true
	}
	insideUsers := map[string]bool{}
	for _, u := range append(slices.Clone(w.users), auditor.ID) {
		var memberships []store.Membership
		if err := w.s.read(ctx, func(tx store.Tx) error {
			var err error
			memberships, err = tx.UserMemberships(ctx, u)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, m := range memberships {
			if insideOrgs[m.Org] {
				insideUsers[u] = true
			}
		}
	}
	var outsideNames []string // ids an answer must never name
	for _, o := range w.orgs {
		if !insideOrgs[o] {
			outsideNames = append(outsideNames, o)
			outsideNames = append(outsideNames, w.groups[o]...)
		}
	}
	for _, u := range w.users {
		if !insideUsers[u] {
			outsideNames = append(outsideNames, u)
		}
	}
	for _, p := range []Principal{{Kind: KindUser, ID: auditor.ID}, {Kind: KindUser, ID: auditor.ID, Org: customer.ID}} {
		for _, o := range w.orgs {
			for _, perm := range []string{"access", "manage_members"} {
				got, totals, err := w.whoCanAll(t, p, orgRef(o), perm)
				if !insideOrgs[o] {
					if !errors.Is(err, trellis.ErrNotFound) {
						t.Fatalf("auditor of %s asking about %s outside: %v, want not found", customer.ID, o, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				all, provTotals, err := w.whoCanAll(t, w.provider, orgRef(o), perm)
				if err != nil {
					t.Fatal(err)
				}
				if totals.Users+totals.Outside != provTotals.Users || len(got) != totals.Users {
					t.Fatalf("auditor totals %+v (listed %d), provider %+v", totals, len(got), provTotals)
				}
				var want []string
				for _, u := range all {
					if insideUsers[strings.TrimPrefix(u.User, "user:")] {
						want = append(want, u.User)
					}
				}
				var ids []string
				for _, u := range got {
					ids = append(ids, u.User)
				}
				if !slices.Equal(ids, want) {
					t.Fatalf("auditor %s sees %v, want the inside users %v", auditor.ID, ids, want)
				}
				raw, _ := json.Marshal(got)
				for _, name := range outsideNames {
					if strings.Contains(string(raw), name) {
						t.Fatalf("the auditor of %s is told about %s outside its subtree: %s", customer.ID, name, raw)
					}
				}
			}
		}
		// groups of outside organizations are unknown too
		for _, o := range w.orgs {
			for _, g := range w.groups[o] {
				_, err := w.s.WhoCan(ctx, p, WhoCanQuery{Resource: groupRef(g), Permission: "view"})
				if insideOrgs[o] != (err == nil) {
					t.Fatalf("auditor asking about group %s of %s (inside %v): %v", g, o, insideOrgs[o], err)
				}
			}
		}
	}
	// the platform is no organization's
	if _, err := w.s.WhoCan(ctx, Principal{Kind: KindUser, ID: auditor.ID}, WhoCanQuery{Resource: engine.ObjectRef{Type: "platform", ID: w.s.cfg.Platform}, Permission: "manage"}); !errors.Is(err, trellis.ErrNotFound) {
		t.Fatalf("auditor asking about the platform: %v", err)
	}
	// an impersonation of the auditor, and a user without view_audit, are refused
	if _, err := w.s.WhoCan(ctx, Principal{Kind: KindUser, ID: auditor.ID, Impersonator: "user:" + w.users[1], Impersonation: "imp_x"}, WhoCanQuery{Resource: orgRef(customer.ID), Permission: "access"}); !errors.Is(err, trellis.ErrForbidden) {
		t.Fatalf("impersonated auditor: %v", err)
	}
	stranger, err := w.s.CreateUser(ctx, w.provider, CreateUser{Email: "stranger@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.WhoCan(ctx, Principal{Kind: KindUser, ID: stranger.ID}, WhoCanQuery{Resource: orgRef(customer.ID), Permission: "access"}); !errors.Is(err, trellis.ErrForbidden) {
		t.Fatalf("a user without view_audit: %v", err)
	}
}

// suspended reports whether o or one of its ancestors is suspended.
func (w *accessWorld) suspended(t *testing.T, o store.Org) bool {
	t.Helper()
	ctx := t.Context()
	out := false
	if err := w.s.read(ctx, func(tx store.Tx) error {
		path, err := w.s.path(ctx, tx, o)
		for _, id := range path {
			x, err := tx.GetOrg(ctx, id)
			if err != nil {
				return err
			}
			out = out || x.Status == store.StatusSuspended
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEffectiveAccessMatchesChecks: for every user of a random forest, the
// permissions listed per organization are exactly those a check allows there
// (every catalogue permission asked of every organization), each with a
// path; the delegation made through the directory is named with its id and
// expiry; the impersonation is listed for its actor; an auditor of one
// organization is told nothing of users outside it (404).
func TestEffectiveAccessMatchesChecks(t *testing.T) {
	w := newAccessWorld(t)
	ctx := t.Context()
	delegations := 0
	// platform staff, a few users, the delegate and the actor
	reviewed := append(slices.Clone(w.users[:5]), w.users[7], w.actor)
	for _, u := range reviewed {
		ua, err := w.s.EffectiveAccess(ctx, w.provider, "user:"+u, "")
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, oa := range ua.Organizations {
			for _, ps := range oa.Permissions {
				listed[oa.Organization+" "+ps.Permission] = true
				if len(ps.Via) == 0 {
					t.Fatalf("user %s: %s on %s without a path", u, ps.Permission, oa.Organization)
				}
				for _, p := range ps.Via {
					if p.Kind == PathDelegation && len(p.Delegations) > 0 {
						delegations++
						if p.ExpiresAt == nil {
							t.Fatalf("user %s: a path through delegations %v has no expiry", u, p.Delegations)
						}
					}
				}
			}
		}
		for _, o := range w.orgs {
			for _, perm := range w.s.catalogue {
				r, err := w.eng.Check(ctx, engine.CheckRequest{Resource: orgRef(o), Permission: perm, Subject: subj("user", u), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
				if err != nil {
					t.Fatal(err)
				}
				if r.Allowed() != listed[o+" "+perm] {
					t.Fatalf("user %s (seed %d): %s on %s: check says %v, effective access lists it: %v", u, w.seed, perm, o, r.Allowed(), listed[o+" "+perm])
				}
			}
		}
		if u == w.actor && len(ua.Impersonations) == 0 {
			t.Fatalf("the actor %s's live impersonation is not listed", u)
		}
	}
	if delegations == 0 {
		t.Fatal("the delegation made through the directory is named on no path")
	}
	// one organization's auditor: users outside it are unknown
	org := w.orgs[len(w.orgs)-1]
	auditor, err := w.s.CreateUser(ctx, w.provider, CreateUser{Email: "ea-auditor@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.Delegate(ctx, w.provider, org, CreateDelegation{Grantee: "user:" + auditor.ID, Scopes: []string{"audit"}}); err != nil {
		t.Fatal(err)
	}
	p := Principal{Kind: KindUser, ID: auditor.ID}
	if w.suspended(t, mustOrg(t, w.s, org)) {
		return // a suspended organization is audited by no one
	}
	for _, u := range w.users {
		var ms []store.Membership
		if err := w.s.read(ctx, func(tx store.Tx) error {
			var err error
			ms, err = tx.UserMemberships(ctx, u)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		inside := slices.ContainsFunc(ms, func(m store.Membership) bool { return m.Org == org })
		ua, err := w.s.EffectiveAccess(ctx, p, u, "")
		if !inside {
			if !errors.Is(err, trellis.ErrNotFound) {
				t.Fatalf("auditor of %s asking about user %s outside: %v", org, u, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, oa := range ua.Organizations {
			if oa.Organization != org {
				t.Fatalf("auditor of %s is told about %s", org, oa.Organization)
			}
		}
	}
}

func mustOrg(t *testing.T, s *Service, id string) store.Org {
	t.Helper()
	var o store.Org
	if err := s.read(t.Context(), func(tx store.Tx) error {
		var err error
		o, err = tx.GetOrg(t.Context(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return o
}
