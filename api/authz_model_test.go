package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// TestAuthorizationModel is the model-based adversarial test of the
// directory's invariants (doc.go, ADR 0012). It builds a small world of
// nested organizations, users, groups, custom roles, delegations, service
// account keys and impersonations, then lets random principals try random
// operations on every directory endpoint over HTTP. After every operation it
// reads every tracked (subject, organization, permission) from the graph and
// compares the change with a reference of the rules:
//
//   - grant bound: every triple a subject gained, the acting principal held
//     on that organization before it acted (access: manage_members) or it
//     governed the organization; an accepted invitation acts for its inviter;
//   - revoke bound: every triple a subject lost, likewise;
//   - no self-grant: what the principal itself gained, it governed;
//   - an impersonation gains nobody anything but plain access, and a
//     read-only one changes nothing; a key gains nobody a permission beyond
//     its limit;
//   - a refused operation changes nothing; no operation answers 5xx.
//
// The provider key is unconstrained. TRELLIS_AUTHZ_SEED replays a run,
// TRELLIS_AUTHZ_OPS sets its length (default 7,000; 1,000 under the race
// detector or -short; make fuzz-authz runs 100,000).
func TestAuthorizationModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TRELLIS_AUTHZ_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	ops := 7000 // make test runs it without the race detector; make fuzz-authz runs 100,000
	if raceEnabled || testing.Short() {
		ops = 1000
	}
	if s := os.Getenv("TRELLIS_AUTHZ_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (replay: TRELLIS_AUTHZ_SEED=%d), %d operations", seed, seed, ops)
	m := newModel(t, seed)
	counts := map[string][2]int{}
	for i := 0; i < ops && !t.Failed(); i++ {
		name, ok := m.step(i)
		c := counts[name]
		if ok {
			c[0]++
		} else {
			c[1]++
		}
		counts[name] = c
	}
	var names []string
	for n := range counts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.Logf("%-22s %5d done %5d refused", n, counts[n][0], counts[n][1])
	}
}

// modelPerms are the organization permissions the reference tracks: full
// administration (govern survives suspension), two delegable scopes that
// gate other grants (members, roles), one that does not (audit), and access.
// The other scopes are wired as audit is (system.zed).
var modelPerms = []string{"govern", "manage", "manage_members", "manage_roles", "view_audit", "access"}

// actor is a principal of the model: who it acts as in the graph, and its limits.
type actor struct {
	name      string
	key       string
	provider  bool
	subject   string   // user:<id> or service_account:<id>
	keyPerms  []string // a key's limit
	imperson  []string // an impersonation's scopes
	impersona string   // its id
}

type model struct {
	t     *testing.T
	h     *harness
	rng   *rand.Rand
	orgs  []string // ids; orgs[0] and orgs[1] are top-level tenants
	slugs map[string]string
	users []string
	// what random operations pick from
	actors      []*actor
	groups      []owned // id, org
	roles       []owned // key, org
	delegations []string
	invites     []invite
	accounts    []owned // id, org
	imps        []string
	// the world as last read
	state map[string]bool
}

// owned is an object of an organization, kept in creation order (random ids
// must not steer the choices: a seed replays the same run).
type owned struct{ id, org string }

type invite struct {
	token string
	email string
	by    *actor
}

func newModel(t *testing.T, seed uint64) *model {
	h := newHarness(t, docApp)
	m := &model{t: t, h: h, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), slugs: map[string]string{}}
	p := h.provider()
	for _, o := range []struct{ slug, parent string }{{"acme", ""}, {"partner", ""}, {"acme-eu", "acme"}, {"acme-us", "acme"}, {"acme-eu-de", "acme-eu"}} {
		id := createOrg(h, testKey, o.slug, o.slug, o.parent)
		m.orgs = append(m.orgs, id)
		m.slugs[id] = o.slug
	}
	for _, d := range []struct{ org, domain string }{{"acme", "acme.example"}, {"partner", "partner.example"}} {
		p.do(201, "POST", "/v1/organizations/"+d.org+"/domains", map[string]any{"domain": d.domain})
		p.do(200, "POST", "/v1/organizations/"+d.org+"/domains/"+d.domain+"/verify", map[string]any{"method": "manual", "reason": "model"})
	}
	for i, email := range []string{"ann@acme.example", "ben@acme.example", "cal@acme.example", "dee@acme.example", "eve@acme.example",
		"pam@partner.example", "pia@partner.example", "oz@elsewhere.example"} {
		id := createUser(h, email)
		m.users = append(m.users, id)
		m.actors = append(m.actors, &actor{name: fmt.Sprintf("user%d", i), key: h.token(id, ""), subject: "user:" + id})
	}
	p.do(201, "POST", "/v1/organizations/acme/roles", map[string]any{"key": "people", "permissions": []string{"manage_members"}})
	m.roles = append(m.roles, owned{"people", m.orgs[0]})
	for _, mb := range []struct {
		org   int
		user  int
		roles []string
	}{{0, 0, []string{"admin"}}, {2, 1, []string{"admin"}}, {0, 2, []string{"member", "people"}}, {3, 3, []string{"member"}},
		{4, 4, []string{"member"}}, {1, 5, []string{"admin"}}, {1, 6, []string{"member"}}} {
		putMember(h, testKey, m.orgs[mb.org], m.users[mb.user], mb.roles...)
	}
	// what the escalations of issue 13 went through, present from the start:
	// a group holding admin, a role-less group, a partner delegated members on
	// a subtree, a local delegate holding members and roles
	for _, g := range []struct {
		org   int
		name  string
		roles []string
	}{{0, "Admins", []string{"admin"}}, {2, "Staff", []string{"member"}}, {0, "People", []string{"people"}}} {
		out := p.do(201, "POST", "/v1/organizations/"+m.orgs[g.org]+"/groups", map[string]any{"name": g.name, "roles": g.roles})
		m.groups = append(m.groups, owned{str(out, "id"), m.orgs[g.org]})
	}
	for _, d := range []map[string]any{
		{"org": m.orgs[3], "grantee": "organization:" + m.orgs[1] + "#admin", "scopes": []string{"members"}, "subtree": true},
		{"org": m.orgs[2], "grantee": "user:" + m.users[3], "scopes": []string{"members", "roles"}},
		{"org": m.orgs[0], "grantee": "user:" + m.users[4], "scopes": []string{"audit"}, "subtree": true},
	} {
		org := d["org"].(string)
		delete(d, "org")
		m.delegations = append(m.delegations, str(p.do(201, "POST", "/v1/organizations/"+org+"/delegations", d), "id"))
	}
	m.actors = append(m.actors, &actor{name: "provider", key: testKey, provider: true})
	m.state = m.read()
	return m
}

func (m *model) pick(n int) int { return m.rng.IntN(n) }

func pickOf[T any](m *model, list []T) T { return list[m.pick(len(list))] }

// where lists the organizations on which subject holds one of perms (as last read).
func (m *model) where(subject string, perms ...string) []string {
	var out []string
	for _, o := range m.orgs {
		for _, p := range perms {
			if m.state[subject+" "+o+" "+p] {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// org picks an organization: mostly one the actor administers somehow, so
// that operations get past the front door and reach the rules.
func (m *model) org(a *actor) string {
	if m.pick(20) == 0 {
		return "org_nosuchorg0000"
	}
	o := pickOf(m, m.orgs)
	if mine := m.where(a.subject, modelPerms[:len(modelPerms)-1]...); len(mine) > 0 && m.pick(3) != 0 {
		o = pickOf(m, mine)
	}
	if m.pick(2) == 0 {
		return m.slugs[o]
	}
	return o
}

// groupsIn lists the groups of the given organizations.
func (m *model) groupsIn(orgs []string) []owned {
	var out []owned
	for _, g := range m.groups {
		if slices.Contains(orgs, g.org) {
			out = append(out, g)
		}
	}
	return out
}

// user picks a user, often one with access to org (groups take only members).
func (m *model) user(org string) string {
	if m.pick(25) == 0 {
		return "usr_nosuchuser000"
	}
	for id, slug := range m.slugs {
		if slug == org {
			org = id // the state is keyed by id; paths take either
		}
	}
	if m.pick(2) == 0 {
		var in []string
		for _, u := range m.users {
			if m.state["user:"+u+" "+org+" access"] {
				in = append(in, u)
			}
		}
		if len(in) > 0 {
			return pickOf(m, in)
		}
	}
	return pickOf(m, m.users)
}

func (m *model) someRoles() []string {
	all := []string{"member", "member", "admin", "admin", "people", "people", "auditor"}
	if m.pick(10) == 0 {
		all = append(all, "owner", "ghost")
	}
	for _, r := range m.roles {
		all = append(all, r.id)
	}
	var out []string
	for range 1 + m.pick(2) {
		out = append(out, pickOf(m, all))
	}
	return out
}

func (m *model) somePerms() []string {
	var out []string
	for range 1 + m.pick(3) {
		out = append(out, pickOf(m, modelPerms[1:]))
	}
	return out
}

func (m *model) scopes() []string {
	all := []string{"members", "roles", "sso", "scim", "branding", "audit", "billing"}
	var out []string
	for range 1 + m.pick(3) {
		out = append(out, pickOf(m, all))
	}
	return out
}

// operation is one request a principal tries; authority is whose authority
// its effects are held to (nil: the actor's).
type operation struct {
	name, method, path string
	body               any
	authority          *actor
	after              func(out map[string]any) // on success: remember what it made
}

// next draws a random operation.
func (m *model) next(a *actor) operation {
	org := m.org(a)
	base := "/v1/organizations/" + org
	switch m.pick(21) {
	case 0, 1, 2:
		body := map[string]any{"roles": m.someRoles()}
		if m.pick(5) == 0 {
			body["status"] = pickOf(m, []string{"active", "suspended", "invited"})
		}
		return operation{name: "member.put", method: "PUT", path: base + "/members/" + m.user(org), body: body}
	case 3:
		return operation{name: "member.remove", method: "DELETE", path: base + "/members/" + m.user(org)}
	case 4:
		return operation{name: "group.create", method: "POST", path: base + "/groups", body: map[string]any{"name": fmt.Sprintf("g%d", m.pick(1000)), "roles": m.someRoles()},
			after: func(out map[string]any) { m.groups = append(m.groups, owned{str(out, "id"), str(out, "organization")}) }}
	case 5:
		if len(m.groups) > 0 {
			g := pickOf(m, m.groups)
			return operation{name: "group.update", method: "PATCH", path: "/v1/organizations/" + g.org + "/groups/" + g.id, body: map[string]any{"roles": m.someRoles()}}
		}
	case 6, 7:
		if len(m.groups) > 0 {
			g := pickOf(m, m.groups)
			if mine := m.groupsIn(m.where(a.subject, "govern", "manage_members")); len(mine) > 0 && m.pick(3) != 0 {
				g = pickOf(m, mine) // a group the actor may manage: the rules, not the front door
			}
			member := m.user(g.org)
			if m.pick(4) == 0 {
				member = "group:" + pickOf(m, m.groups).id
			}
			method := "PUT"
			if m.pick(3) == 0 {
				method = "DELETE"
			}
			return operation{name: "group.member." + strings.ToLower(method), method: method, path: "/v1/organizations/" + g.org + "/groups/" + g.id + "/members/" + member}
		}
	case 8:
		key := pickOf(m, []string{"auditor", "helper", "shadow"})
		return operation{name: "role.create", method: "POST", path: base + "/roles", body: map[string]any{"key": key, "permissions": m.somePerms()},
			after: func(out map[string]any) { m.roles = append(m.roles, owned{key, str(out, "organization")}) }}
	case 9:
		if len(m.roles) > 0 {
			r := pickOf(m, m.roles)
			if m.pick(4) == 0 {
				return operation{name: "role.delete", method: "DELETE", path: "/v1/organizations/" + r.org + "/roles/" + r.id}
			}
			return operation{name: "role.update", method: "PATCH", path: "/v1/organizations/" + r.org + "/roles/" + r.id, body: map[string]any{"permissions": m.somePerms()}}
		}
	case 10, 11:
		grantee := "user:" + m.user(org)
		switch m.pick(4) {
		case 0:
			if len(m.groups) > 0 {
				grantee = "group:" + pickOf(m, m.groups).id
			}
		case 1:
			grantee = "organization:" + pickOf(m, m.orgs) + "#admin"
		}
		body := map[string]any{"grantee": grantee, "scopes": m.scopes(), "subtree": m.pick(2) == 0, "requireApproval": m.pick(4) == 0}
		return operation{name: "delegation.create", method: "POST", path: base + "/delegations", body: body,
			after: func(out map[string]any) { m.delegations = append(m.delegations, str(out, "id")) }}
	case 12:
		if len(m.delegations) > 0 {
			id := pickOf(m, m.delegations)
			if m.pick(2) == 0 {
				return operation{name: "delegation.approve", method: "POST", path: "/v1/delegations/" + id + "/approve"}
			}
			return operation{name: "delegation.revoke", method: "DELETE", path: "/v1/delegations/" + id}
		}
	case 13:
		email := pickOf(m, []string{"ann", "ben", "cal", "dee", "eve", "zed"}) + "@" + pickOf(m, []string{"acme.example", "partner.example"})
		return operation{name: "invitation.create", method: "POST", path: base + "/invitations", body: map[string]any{"email": email, "roles": m.someRoles()},
			after: func(out map[string]any) {
				m.invites = append(m.invites, invite{token: str(out, "token"), email: email, by: a})
			}}
	case 14:
		if len(m.invites) > 0 {
			inv := pickOf(m, m.invites)
			return operation{name: "invitation.accept", method: "POST", path: "/v1/invitations/" + inv.token + "/accept", body: map[string]any{}, authority: inv.by}
		}
	case 15:
		return operation{name: "service_account.create", method: "POST", path: base + "/service-accounts", body: map[string]any{"name": fmt.Sprintf("bot%d", m.pick(1000)), "roles": m.someRoles()},
			after: func(out map[string]any) {
				m.accounts = append(m.accounts, owned{str(out, "id"), str(out, "organization")})
			}}
	case 16:
		if len(m.accounts) > 0 {
			sa := pickOf(m, m.accounts)
			id := sa.id
			path := "/v1/organizations/" + sa.org + "/service-accounts/" + id
			if m.pick(2) == 0 {
				return operation{name: "service_account.update", method: "PATCH", path: path, body: map[string]any{"roles": m.someRoles()}}
			}
			perms := m.somePerms()
			return operation{name: "api_key.create", method: "POST", path: path + "/keys", body: map[string]any{"permissions": perms},
				after: func(out map[string]any) {
					m.actors = append(m.actors, &actor{name: "key", key: str(out, "key"), subject: "service_account:" + id, keyPerms: perms})
				}}
		}
	case 17:
		scopes := pickOf(m, [][]string{{"read-only"}, {"*"}, {"manage_members", "access"}, m.somePerms()})
		if mine := m.where(a.subject, "govern"); len(mine) > 0 && m.pick(4) != 0 {
			org = pickOf(m, mine) // where the actor may impersonate
		}
		target := m.user(org)
		for range 4 {
			if "user:"+target != a.subject {
				break
			}
			target = m.user(org)
		}
		body := map[string]any{"target": "user:" + target, "organization": org, "reason": "model", "scopes": scopes, "duration": 3600}
		return operation{name: "impersonation.create", method: "POST", path: "/v1/impersonations", body: body,
			after: func(out map[string]any) {
				id := str(out, "id")
				m.imps = append(m.imps, id)
				if out["status"] == "active" {
					code, tok := m.h.callAs(a.key, "POST", "/v1/impersonations/"+id+"/token", nil)
					if code == 201 {
						m.actors = append(m.actors, &actor{name: "impersonation", key: str(tok, "accessToken"), subject: "user:" + target, imperson: scopes, impersona: id})
					}
				}
			}}
	case 18:
		if len(m.imps) > 0 {
			id := pickOf(m, m.imps)
			return operation{name: "impersonation.end", method: "POST", path: "/v1/impersonations/" + id + "/" + pickOf(m, []string{"end", "approve"})}
		}
	case 19:
		body := map[string]any{}
		switch m.pick(3) {
		case 0:
			body["status"] = pickOf(m, []string{"suspended", "active"})
		case 1:
			body["policy"] = map[string]any{pickOf(m, []string{"requireDelegationApproval", "requireImpersonationApproval"}): m.pick(2) == 0}
		default:
			body["name"] = fmt.Sprintf("Renamed %d", m.pick(100))
		}
		return operation{name: "organization.update", method: "PATCH", path: base, body: body}
	case 20:
		if len(m.orgs) < 9 {
			slug := fmt.Sprintf("sub%d", m.pick(100000))
			return operation{name: "organization.create", method: "POST", path: "/v1/organizations", body: map[string]any{"name": slug, "slug": slug, "parent": org},
				after: func(out map[string]any) { m.orgs = append(m.orgs, str(out, "id")); m.slugs[str(out, "id")] = slug }}
		}
	}
	return operation{name: "member.get", method: "GET", path: base + "/members"}
}

// step runs one random operation and checks it against the reference.
func (m *model) step(i int) (string, bool) {
	// mostly principals that administer something: they reach the rules
	var admins []*actor
	for _, x := range m.actors {
		if !x.provider && len(m.where(x.subject, "govern", "manage_members", "manage_roles", "view_audit", "manage_branding")) > 0 {
			admins = append(admins, x)
		}
	}
	a := m.actors[m.pick(len(m.actors))]
	if len(admins) > 0 && m.pick(3) != 0 {
		a = pickOf(m, admins)
	}
	if a.provider && m.pick(4) != 0 {
		a = m.actors[m.pick(len(m.actors))] // the unconstrained provider acts rarely
	}
	op := m.next(a)
	code, out := m.h.callAs(a.key, op.method, op.path, op.body)
	if code >= 500 {
		m.t.Fatalf("op %d %s by %s: %s %s %v → %d %v", i, op.name, a.name, op.method, op.path, op.body, code, out)
	}
	ok := code < 300
	if ok && op.after != nil {
		op.after(out)
	}
	before := m.state
	m.state = m.read()
	gained, lost := diff(before, m.state), diff(m.state, before)
	if len(gained)+len(lost) == 0 {
		return op.name, ok
	}
	where := fmt.Sprintf("op %d %s by %s (%s %s %v → %d)", i, op.name, a.name, op.method, op.path, op.body, code)
	if !ok {
		m.t.Fatalf("%s was refused but changed the graph: gained %v, lost %v", where, gained, lost)
	}
	authority := a
	if op.authority != nil {
		authority = op.authority
	}
	if authority.provider {
		return op.name, ok
	}
	if body, _ := op.body.(map[string]any); op.name == "organization.update" && body["status"] != nil {
		// suspension is decided by whoever governs the organization (the
		// directory checks govern) and suspends everything held through it,
		// delegations to its admins included (ADR 0009); reactivation restores it
		return op.name, ok
	}
	if len(a.imperson) > 0 && slices.Equal(a.imperson, []string{"read-only"}) {
		m.t.Fatalf("%s: a read-only impersonation changed the graph: gained %v, lost %v", where, gained, lost)
	}
	for _, g := range gained {
		m.allowed(where, "gained", authority, a, g, before, true)
	}
	for _, l := range lost {
		m.allowed(where, "lost", authority, a, l, before, false)
	}
	return op.name, ok
}

// allowed is the reference: may authority have caused this change of triple?
func (m *model) allowed(where, what string, authority, a *actor, triple string, before map[string]bool, gain bool) {
	subject, org, perm := splitTriple(triple)
	if _, known := m.slugs[org]; !known {
		return
	}
	if gain && len(a.imperson) > 0 && perm != "access" {
		m.t.Errorf("%s: an impersonation %s %s", where, what, triple)
	}
	need := perm
	if perm == "access" {
		need = "manage_members"
	}
	held := func(perm string, orgs []string) bool {
		for _, o := range orgs {
			if before[authority.subject+" "+o+" "+perm] {
				return true
			}
		}
		return false
	}
	// an organization made by this very operation inherits its parent's rights
	orgs := []string{org}
	if !m.known(before, org) {
		orgs = m.ancestors(org)
	}
	if !held(need, orgs) && !held("govern", orgs) {
		m.t.Errorf("%s: %s %s (%s), but the acting principal (%s) held neither %s nor govern there", where, what, triple, m.slugs[org], authority.subject, need)
	}
	if authority.keyPerms != nil && !slices.Contains(authority.keyPerms, "manage") && !slices.Contains(authority.keyPerms, need) && perm != "govern" {
		m.t.Errorf("%s: %s %s beyond the key's limit %v", where, what, triple, authority.keyPerms)
	}
	if gain && subject == authority.subject && !held("govern", orgs) {
		m.t.Errorf("%s: the principal granted itself %s without governing the organization", where, triple)
	}
}

// known: the organization existed before the operation.
func (m *model) known(state map[string]bool, org string) bool {
	for k, v := range state {
		if v && strings.Contains(k, " "+org+" ") {
			return true
		}
	}
	return false
}

// ancestors lists an organization's parents, nearest first.
func (m *model) ancestors(org string) []string {
	var out []string
	got := m.h.provider().do(200, "GET", "/v1/organizations/"+org, nil)
	path := strs(got["path"])
	for i := len(path) - 2; i >= 0; i-- {
		out = append(out, path[i])
	}
	return out
}

func splitTriple(s string) (subject, org, perm string) {
	parts := strings.SplitN(s, " ", 3)
	return parts[0], parts[1], parts[2]
}

// diff lists the triples true in b and not in a, for subjects both track (a
// subject newly tracked — a service account that got a key — is not a change).
func diff(a, b map[string]bool) []string {
	inA := map[string]bool{}
	for k := range a {
		inA[strings.SplitN(k, " ", 2)[0]] = true
	}
	var out []string
	for k, v := range b {
		if v && !a[k] && inA[strings.SplitN(k, " ", 2)[0]] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// read asks the graph every tracked triple: users and service accounts, on
// every organization, for every tracked permission.
func (m *model) read() map[string]bool {
	var subjects []engine.SubjectRef
	for _, u := range m.users {
		subjects = append(subjects, engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: u}})
	}
	// service accounts: those with keys (they act: the reference needs what
	// they hold), and the first few as subjects of grants
	tracked := map[string]bool{}
	for i, sa := range m.accounts {
		if i < 4 {
			tracked["service_account:"+sa.id] = true
		}
	}
	for _, a := range m.actors {
		if strings.HasPrefix(a.subject, "service_account:") {
			tracked[a.subject] = true
		}
	}
	for _, sa := range m.accounts {
		if tracked["service_account:"+sa.id] {
			subjects = append(subjects, engine.SubjectRef{Object: engine.ObjectRef{Type: "service_account", ID: sa.id}})
		}
	}
	var reqs []engine.CheckRequest
	for _, o := range m.orgs {
		for _, s := range subjects {
			for _, p := range modelPerms {
				reqs = append(reqs, engine.CheckRequest{Resource: engine.ObjectRef{Type: "organization", ID: o}, Permission: p, Subject: s})
			}
		}
	}
	out := map[string]bool{}
	for start := 0; start < len(reqs); start += 1000 {
		batch := reqs[start:min(start+1000, len(reqs))]
		res, err := m.h.graph.CheckBulk(context.Background(), batch)
		if err != nil {
			m.t.Fatalf("read the graph: %v", err)
		}
		for i, r := range res {
			q := batch[i]
			out[q.Subject.Object.Type+":"+q.Subject.Object.ID+" "+q.Resource.ID+" "+q.Permission] = r.Allowed()
		}
	}
	return out
}
