package api_test

import (
	"slices"
	"testing"
	"time"
)

// The delegation tests start from newTree plus a partner organization outside
// the customer's tree (a reseller's admins administer through delegation, not
// through the parent chain):
//
//	partner (admin pat, member bob)
func newPartner(h *harness) (partner, pat, bob string) {
	h.t.Helper()
	partner = createOrg(h, testKey, "Partner", "partner", "")
	pat = createUser(h, "pat@partner.example")
	bob = createUser(h, "bob@partner.example")
	putMember(h, testKey, partner, pat, "admin")
	putMember(h, testKey, partner, bob, "member")
	return partner, pat, bob
}

// delegation is GET /v1/delegations/{id} as c.
func delegation(c caller, id string) map[string]any {
	return c.do(200, "GET", "/v1/delegations/"+id, nil)
}

func TestPartnerDelegationNeedsApproval(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	partner, pat, _ := newPartner(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	// pat's token is scoped to partner: acting for the partner, it reaches the
	// organizations delegated to the partner's admins, and no other
	pa := h.as(h.token(pat, partner))
	newcomer := createUser(h, "nina@customer.example")
	member := map[string]any{"roles": []string{"member"}}

	// the customer requires its approval for delegations
	org := ca.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"policy": map[string]any{"requireDelegationApproval": true}})
	if pol, _ := org["policy"].(map[string]any); pol["requireDelegationApproval"] != true {
		t.Fatalf("policy after PATCH = %v", org["policy"])
	}
	// the provider delegates members + audit on the customer to the partner's admins
	d := p.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{
		"grantee": "organization:partner#admin", "scopes": []string{"members", "audit"}, "reason": "managed service contract",
	})
	id := str(d, "id")
	wantEqual(t, "status", d["status"], "pending")
	wantEqual(t, "grantee", d["grantee"], "organization:"+partner+"#admin")
	wantEqual(t, "grantedBy", d["grantedBy"], "provider:admin-key")
	wantEqual(t, "via", d["via"], []any{})

	// pending: the partner's admin cannot see the customer, let alone manage it
	pa.fails(404, "", "", "PUT", "/v1/organizations/customer/members/"+newcomer, member)
	pa.fails(404, "", "", "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "organizations the partner's admin lists", orgIDs(h, pa, "/v1/organizations"), []string{partner})
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+pat)
	// …but sees its own pending grant, and cannot approve it
	wantEqual(t, "status seen by grantee", delegation(pa, id)["status"], "pending")
	pa.fails(403, "", "", "POST", "/v1/delegations/"+id+"/approve", nil)
	// the provider governs the customer from above, but approval is the customer's
	p.fails(403, "", "", "POST", "/v1/delegations/"+id+"/approve", nil)

	// the customer's admin approves
	d = ca.do(200, "POST", "/v1/delegations/"+id+"/approve", nil)
	wantEqual(t, "status", d["status"], "active")
	wantEqual(t, "approvedBy", d["approvedBy"], "user:"+tr.customerAdmin)
	h.expect(true, "organization:"+tr.customer, "manage_members", "user:"+pat)
	pa.do(200, "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "organizations the partner's admin lists", orgIDs(h, pa, "/v1/organizations"), []string{tr.customer, partner})
	pa.do(201, "PUT", "/v1/organizations/customer/members/"+newcomer, member)
	pa.do(200, "GET", "/v1/organizations/customer/audit", nil)
	// suspending the partner suspends what its admins administer through it
	p.do(200, "PATCH", "/v1/organizations/partner", map[string]any{"status": "suspended"})
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+pat)
	p.do(200, "PATCH", "/v1/organizations/partner", map[string]any{"status": "active"})
	h.expect(true, "organization:"+tr.customer, "manage_members", "user:"+pat)
	// outside its scopes the delegate is refused
	pa.fails(403, "", "", "PATCH", "/v1/organizations/customer", map[string]any{"branding": map[string]any{"primaryColor": "#112233"}})
	pa.fails(403, "", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "x", "permissions": []string{"access"}})
	pa.fails(403, "", "", "PATCH", "/v1/organizations/customer", map[string]any{"name": "Taken over"})
	// members scope reaches the customer only (subtree was not asked for)
	pa.fails(404, "", "", "PUT", "/v1/organizations/region/members/"+newcomer, member)
	// a second approval changes nothing; the list shows it
	ca.do(200, "POST", "/v1/delegations/"+id+"/approve", nil)
	list := items(t, ca.do(200, "GET", "/v1/organizations/customer/delegations", nil), "delegations")
	wantEqual(t, "delegations", pluck(list, "id"), []string{id})

	// the customer revokes at any time: the next request is refused
	d = ca.do(200, "DELETE", "/v1/delegations/"+id, nil)
	wantEqual(t, "status", d["status"], "revoked")
	wantEqual(t, "revoked", strs(d["revoked"]), []string{id})
	pa.fails(404, "", "", "DELETE", "/v1/organizations/customer/members/"+newcomer, nil)
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+pat)
	ca.fails(409, "delegation_revoked", "", "POST", "/v1/delegations/"+id+"/approve", nil)

	// the audit trail has every step, by whom
	events := auditEvents(h, p, "/v1/organizations/customer/audit")
	for _, want := range []struct{ action, actor string }{
		{"delegation.create", "provider:admin-key"},
		{"delegation.approve", "user:" + tr.customerAdmin},
		{"member.add", "user:" + pat},
		{"delegation.revoke", "user:" + tr.customerAdmin},
	} {
		found := false
		for _, ev := range events {
			found = found || ev["action"] == want.action && ev["actor"] == want.actor
		}
		if !found {
			t.Errorf("no %s by %s in the customer's audit log", want.action, want.actor)
		}
	}
	// other organizations are not told about it
	p.fails(404, "", "", "GET", "/v1/delegations/dlg_doesnotexist", nil)
	h.as(h.token(tr.siblingMember, tr.sibling)).fails(404, "", "", "GET", "/v1/delegations/"+id, nil)
}

func TestDelegationScopesAndEscalation(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	dora := createUser(h, "dora@customer.example")
	putMember(h, testKey, tr.customer, dora, "member")
	x := createUser(h, "xavi@customer.example")

	// bad input names its field
	ca.fails(400, "", "scopes", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + dora})
	ca.fails(400, "", "scopes[1]", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + dora, "scopes": []string{"members", "everything"}})
	ca.fails(400, "", "grantee", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:nobody", "scopes": []string{"members"}})
	ca.fails(400, "", "grantee", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "organization:customer#member", "scopes": []string{"members"}})
	ca.fails(400, "", "expiresAt", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + dora, "scopes": []string{"members"}, "expiresAt": h.clock.Now().Add(-time.Minute)})

	// members on the customer and its subtree
	d := ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + dora, "scopes": []string{"members"}, "subtree": true})
	wantEqual(t, "status", d["status"], "active")
	da := h.as(h.token(dora, tr.customer))
	da.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	da.do(201, "PUT", "/v1/organizations/region/members/"+x, map[string]any{"roles": []string{"member"}})
	// a members delegate cannot touch SSO, roles, branding or the audit log
	h.expect(false, "organization:"+tr.customer, "manage_sso", "user:"+dora)
	da.fails(403, "", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "x", "permissions": []string{"access"}})
	da.fails(403, "", "", "PATCH", "/v1/organizations/customer", map[string]any{"branding": map[string]any{"primaryColor": "#112233"}})
	da.fails(403, "", "", "GET", "/v1/organizations/customer/audit", nil)
	// escalation: granting what it does not hold is refused and audited
	da.fails(403, "", "", "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"admin"}})
	da.fails(403, "", "", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + x, "scopes": []string{"members", "sso"}})
	h.expect(false, "organization:"+tr.customer, "manage_sso", "user:"+x)
	events := auditEvents(h, p, "/v1/organizations/customer/audit")
	denied := find(t, events, "delegation.create.denied", "organization:"+tr.customer)
	wantEqual(t, "denied actor", denied["actor"], "user:"+dora)
	if det, _ := denied["details"].(map[string]any); det["permission"] != "manage_sso" {
		t.Errorf("denied details = %v, want permission manage_sso", denied["details"])
	}

	// a delegate re-delegates within what it holds: via records the source
	d2 := da.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + x, "scopes": []string{"members"}})
	wantEqual(t, "via", strs(d2["via"]), []string{str(d, "id")})
	// a customer-only (not subtree) grant cannot be passed on for the subtree
	ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + dora, "scopes": []string{"branding"}})
	da.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"branding": map[string]any{"primaryColor": "#112233"}})
	da.fails(403, "", "", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + x, "scopes": []string{"branding"}, "subtree": true})
	// it sees the region (members reach it) but branding does not
	da.fails(403, "", "", "PATCH", "/v1/organizations/region", map[string]any{"branding": map[string]any{"primaryColor": "#112233"}})

	// a time-bound delegation ends by itself (the graph's expiring relationship)
	eve := createUser(h, "eve@customer.example")
	exp := time.Now().Add(4 * time.Second).UTC().Truncate(time.Millisecond)
	d3 := ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + eve, "scopes": []string{"audit"}, "expiresAt": exp})
	wantTime(t, "expiresAt", d3["expiresAt"], exp)
	h.expect(true, "organization:"+tr.customer, "view_audit", "user:"+eve)
	time.Sleep(time.Until(exp) + 300*time.Millisecond) // no write in between: the expiry alone ends it
	h.expect(false, "organization:"+tr.customer, "view_audit", "user:"+eve)
	h.clock.Advance(exp.Sub(h.clock.Now()) + time.Second) // the directory's clock, for its rows
	wantEqual(t, "status after expiry", delegation(ca, str(d3, "id"))["status"], "expired")
}

func TestCascadingRevocation(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	partner, pat, bob := newPartner(h)
	ca := h.as(tr.customerToken)
	carol := createUser(h, "carol@partner.example")
	putMember(h, testKey, tr.customer, carol, "member") // a grantee its grantors can see
	x := createUser(h, "xena@customer.example")
	member := map[string]any{"roles": []string{"member"}}

	// customer → partner's admins (members + roles, 1 hour) → bob → carol
	until := h.clock.Now().Add(time.Hour)
	d1 := ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{
		"grantee": "organization:" + partner + "#admin", "scopes": []string{"members", "roles"}, "expiresAt": until,
	})
	pa := h.as(h.token(pat, ""))
	d2 := pa.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{
		"grantee": "user:" + bob, "scopes": []string{"members"}, "expiresAt": until.Add(24 * time.Hour),
	})
	wantEqual(t, "d2 via", strs(d2["via"]), []string{str(d1, "id")})
	wantTime(t, "d2 expiresAt (capped by d1)", d2["expiresAt"], until)
	ba := h.as(h.token(bob, ""))
	// bob cannot pass on roles: it holds members only
	ba.fails(403, "", "", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + carol, "scopes": []string{"roles"}})
	d3 := ba.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + carol, "scopes": []string{"members"}})
	wantEqual(t, "d3 via", strs(d3["via"]), []string{str(d2, "id")})
	cla := h.as(h.token(carol, ""))
	cla.do(201, "PUT", "/v1/organizations/customer/members/"+x, member)

	// the chain, nearest first
	got := delegation(cla, str(d3, "id"))
	wantEqual(t, "chain", pluck(items(t, got, "chain"), "id"), []string{str(d2, "id"), str(d1, "id")})
	wantEqual(t, "granted through d1", strs(delegation(ca, str(d1, "id"))["granted"]), []string{str(d2, "id")})

	// revoking the top revokes both levels below, in one operation
	out := ca.do(200, "DELETE", "/v1/delegations/"+str(d1, "id"), nil)
	revoked := strs(out["revoked"])
	slices.Sort(revoked)
	want := []string{str(d1, "id"), str(d2, "id"), str(d3, "id")}
	slices.Sort(want)
	wantEqual(t, "revoked", revoked, want)
	for _, who := range []string{pat, bob, carol} {
		h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+who)
	}
	cla.fails(403, "", "", "DELETE", "/v1/organizations/customer/members/"+x, nil) // a member: sees it, manages nothing
	ba.fails(404, "", "", "PUT", "/v1/organizations/customer/members/"+x, member)
	for _, id := range want {
		wantEqual(t, id+" status", delegation(ca, id)["status"], "revoked")
	}
	// the cascade is audited, each with its cause
	events := auditEvents(h, h.provider(), "/v1/organizations/customer/audit")
	ev := find(t, events, "delegation.revoke", "delegation:"+str(d3, "id"))
	if det, _ := ev["details"].(map[string]any); det["cascadedFrom"] != str(d2, "id") {
		t.Errorf("d3 revoke details = %v, want cascadedFrom %s", ev["details"], str(d2, "id"))
	}
	wantEqual(t, "revoked by", ev["actor"], "user:"+tr.customerAdmin)
}

func TestMandatoryDelegation(t *testing.T) {
	h := newHarness(t, docApp)
	partner, pat, _ := newPartner(h)
	p := h.provider()
	org := p.do(201, "POST", "/v1/organizations", map[string]any{"name": "Managed", "slug": "managed", "policy": map[string]any{"delegationRequired": true}})
	if pol, _ := org["policy"].(map[string]any); pol["delegationRequired"] != true {
		t.Fatalf("policy = %v", org["policy"])
	}
	u := createUser(h, "uma@managed.example")
	// it has no administrators of its own
	p.fails(422, "delegation_required", "", "PUT", "/v1/organizations/managed/members/"+u, map[string]any{"roles": []string{"admin"}})
	putMember(h, testKey, str(org, "id"), u, "member")
	// its administration comes through delegation; the governor (provider) approves
	d := p.do(201, "POST", "/v1/organizations/managed/delegations", map[string]any{
		"grantee": "organization:" + partner + "#admin", "scopes": []string{"members"}, "requireApproval": true,
	})
	wantEqual(t, "status", d["status"], "pending")
	p.do(200, "POST", "/v1/delegations/"+str(d, "id")+"/approve", nil)
	h.expect(true, "organization:"+str(org, "id"), "manage_members", "user:"+pat)
	// an organization with admins cannot be switched to mandatory delegation
	c := createOrg(h, testKey, "Own", "own", "")
	putMember(h, testKey, c, u, "owner")
	p.fails(409, "has_admins", "", "PATCH", "/v1/organizations/own", map[string]any{"policy": map[string]any{"delegationRequired": true}})
}
