package api_test

import (
	"slices"
	"strings"
	"testing"
)

// Finding 3 (check path): a check with actor answers only for resources inside
// the impersonation's organization subtree — not another tenant's document or
// organization, not the parent an impersonated ancestor admin manages.
func TestFinding3ImpersonationConfinedToItsOrganization(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	ga := h.as(w.garyToken)
	gary := "user:" + w.gary
	// ivan (initech) and rita (northwind) become members of globex
	putMember(h, testKey, w.globex, w.ivan, "member")
	putMember(h, testKey, w.globex, w.rita, "member")
	// a globex document shared with a group of initech hangs from both tenants;
	// a document hanging from no organization has no known anchor
	planners := str(h.provider().do(201, "POST", "/v1/organizations/initech/groups", map[string]any{"name": "Planners"}), "id")
	h.provider().do(200, "PUT", "/v1/organizations/initech/groups/"+planners+"/members/"+w.ivan, nil)
	h.write(
		rel("document:shared-plan", "org", "organization:"+w.globex),
		rel("document:shared-plan", "viewer", "group:"+planners+"#member"),
		rel("document:loose-note", "owner", "user:"+w.ivan),
	)
	// the targets do hold all of it themselves
	for _, c := range [][3]string{
		{"document:initech-plan", "edit", w.ivan},
		{"organization:" + w.initech, "manage", w.ivan},
		{"document:shared-plan", "view", w.ivan},
		{"document:loose-note", "edit", w.ivan},
		{"organization:" + w.northwind, "manage", w.rita},
		{"document:initech-plan", "edit", w.rita},
	} {
		h.expect(true, c[0], c[1], "user:"+c[2])
	}

	// gary impersonates ivan in globex with every scope
	impersonate(ga, "", w.ivan, "globex", "*")
	for _, c := range []struct {
		resource, permission string
		want                 bool
	}{
		{"document:initech-plan", "edit", false},         // another tenant's document
		{"document:initech-plan", "view", false},         //
		{"organization:" + w.initech, "manage", false},   // another tenant's organization
		{"organization:" + w.initech, "access", false},   //
		{"document:shared-plan", "view", false},          // hangs from initech too
		{"document:loose-note", "edit", false},           // hangs from no organization
		{"organization:" + w.globex, "access", true},     // inside: still allowed
		{"document:globex-plan", "view", true},           //
		{"organization:" + w.globex, "manage", false},    // ivan does not manage globex
		{"platform:trellis", "support_access", false},    // never the platform
		{"organization:" + w.northwind, "access", false}, // nor the parent
	} {
		if got := h.checkAs(c.resource, c.permission, "user:"+w.ivan, gary); got != c.want {
			t.Errorf("as ivan in globex: check %s#%s with actor = %v, want %v", c.resource, c.permission, got, c.want)
		}
	}
	// bulk checks take the same path
	bulk := items(t, h.provider().do(200, "POST", "/v1/check/bulk", map[string]any{"items": []map[string]any{
		{"resource": "document:initech-plan", "permission": "edit", "subject": "user:" + w.ivan, "actor": gary},
		{"resource": "document:globex-plan", "permission": "view", "subject": "user:" + w.ivan, "actor": gary},
	}}), "results")
	wantEqual(t, "bulk allowed", []any{bulk[0]["allowed"], bulk[1]["allowed"]}, []any{false, true})

	// gary impersonates rita, who administers globex's parent, in globex
	impersonate(ga, "", w.rita, "globex", "*")
	for _, c := range []struct {
		resource, permission string
		want                 bool
	}{
		{"organization:" + w.northwind, "manage", false}, // the parent she administers
		{"organization:" + w.initech, "manage", false},   // globex's sibling
		{"document:initech-plan", "edit", false},         //
		{"organization:" + w.globex, "manage", true},     // globex and its subtree: allowed
		{"organization:" + w.globexEU, "manage", true},   //
		{"document:globex-eu-plan", "edit", true},        //
	} {
		if got := h.checkAs(c.resource, c.permission, "user:"+w.rita, gary); got != c.want {
			t.Errorf("as rita in globex: check %s#%s with actor = %v, want %v", c.resource, c.permission, got, c.want)
		}
	}
}

// Issue 13: platform staff (admins, support, auditors) can be impersonated
// only by platform admins, and a check with actor never reaches the platform.
func TestFinding3PlatformStaffImpersonatedOnlyByPlatformAdmins(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	p := h.provider()
	ga := h.as(w.garyToken)
	sam, samToken := supportUser(h, "sam@provider.example")
	audrey := createUser(h, "audrey@provider.example")
	pat := createUser(h, "pat@provider.example")
	h.write(rel("platform:trellis", "auditor", "user:"+audrey), rel("platform:trellis", "admin", "user:"+pat))
	for _, u := range []string{sam, audrey, pat} {
		putMember(h, testKey, w.globex, u, "member")
	}

	// an org admin may not act as support staff, an auditor or an admin of the platform
	staff := func(c caller, target string) {
		t.Helper()
		out := c.fails(403, "", "", "POST", "/v1/impersonations",
			map[string]any{"target": "user:" + target, "organization": "globex", "reason": "ticket 13", "scopes": []string{"*"}})
		if !strings.Contains(str(out, "detail"), "platform staff") {
			t.Errorf("refusal %v, want it to say the target is platform staff", out)
		}
	}
	for _, target := range []string{sam, audrey, pat} {
		staff(ga, target)
	}
	denied := 0
	for _, ev := range auditEvents(h, p, "/v1/organizations/globex/audit") {
		if ev["action"] == "impersonation.request.denied" && ev["actor"] == "user:"+w.gary {
			denied++
		}
	}
	wantEqual(t, "impersonation.request.denied events", denied, 3)
	// nor may support staff act as another staff member
	staff(h.as(samToken), audrey)
	if h.checkAs("platform:trellis", "support_access", "user:"+sam, "user:"+w.gary) {
		t.Error("check platform#support_access with actor allowed although the impersonation was refused")
	}

	// a platform admin may, and still never reaches the platform through it
	pa := h.as(h.token(pat, ""))
	id := impersonate(pa, "", sam, "globex", "*")
	if h.checkAs("platform:trellis", "support_access", "user:"+sam, "user:"+pat) {
		t.Error("check platform#support_access with actor allowed: the platform lies outside every organization")
	}
	if !h.checkAs("organization:"+w.globex, "access", "user:"+sam, "user:"+pat) {
		t.Error("check organization access with actor denied inside the impersonation's organization")
	}
	listed := items(t, p.do(200, "GET", "/v1/organizations/globex/impersonations", nil), "impersonations")
	wantEqual(t, "impersonations of globex", pluck(listed, "id"), []string{id})
}

// Finding 3 (directory): an impersonation token reaches its organization's
// subtree only — not the organizations delegated to the target.
func TestFinding3ImpersonationTokenDoesNotReachDelegatedOrgs(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	p := h.provider()
	ga := h.as(w.garyToken)
	newcomer := createUser(h, "nina@lone.example")
	member := map[string]any{"roles": []string{"member"}}
	p.do(201, "POST", "/v1/organizations/lone/delegations", map[string]any{
		"grantee": "organization:" + w.initech + "#admin", "scopes": []string{"members"}, "reason": "managed by initech",
	})
	// ivan, acting for initech, administers lone's members
	h.as(h.token(w.ivan, w.initech)).do(200, "GET", "/v1/organizations/lone/members", nil)

	putMember(h, testKey, w.globex, w.ivan, "member")
	imp := h.as(impersonationToken(ga, impersonate(ga, "", w.ivan, "globex", "*")))
	imp.do(200, "GET", "/v1/organizations/globex", nil) // inside its organization
	imp.fails(404, "", "", "GET", "/v1/organizations/lone/members", nil)
	imp.fails(404, "", "", "PUT", "/v1/organizations/lone/members/"+newcomer, member)
	imp.fails(404, "", "", "GET", "/v1/organizations/lone", nil)
	imp.fails(404, "", "", "GET", "/v1/organizations/initech/members", nil) // the target's own organization
	if listed := orgIDs(h, imp, "/v1/organizations"); slices.Contains(listed, w.lone) || slices.Contains(listed, w.initech) {
		t.Errorf("organizations listed through the impersonation = %v, want neither lone (%s) nor initech (%s)", listed, w.lone, w.initech)
	}
	h.canAccess(false, w.lone, newcomer)
}
