package api_test

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Regression tests for the escalations of issue 13, each driven over HTTP the
// way the attacker did it. They start from newTree:
//
//	reseller (admin rita) ─┬─ customer (admin carla, member cole; owns customer.example) ── region (member rene)
//	                       └─ sibling (member sid)

// peopleManager adds hank@customer.example to the customer with a custom
// role that carries manage_members only, and returns hank's caller.
func peopleManager(h *harness, tr *tree) (string, caller) {
	h.t.Helper()
	h.provider().do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "people-manager", "permissions": []string{"manage_members"}})
	hank := createUser(h, "hank@customer.example")
	putMember(h, testKey, tr.customer, hank, "member", "people-manager")
	return hank, h.as(h.token(hank, tr.customer))
}

func TestFinding1GroupMembershipCannotEscalate(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	partner, pat, _ := newPartner(h)
	ca := h.as(tr.customerToken)
	hank, hm := peopleManager(h, tr)
	customer := "organization:" + tr.customer
	groups := "/v1/organizations/customer/groups/"

	admins := str(ca.do(201, "POST", "/v1/organizations/customer/groups", map[string]any{"name": "Admins", "roles": []string{"admin"}}), "id")
	// hank manages members, not the organization: the group's admin role is not his to hand out
	hm.fails(403, "forbidden", "", "PUT", groups+admins+"/members/"+hank, nil)
	hm.fails(403, "forbidden", "", "PUT", groups+admins+"/members/"+tr.customerMember, nil)
	h.expect(false, customer, "manage", "user:"+hank)
	h.expect(false, customer, "manage", "user:"+tr.customerMember)
	// nor to take away: an admin in the group stays
	ca.do(200, "PUT", groups+admins+"/members/"+tr.customerMember, nil)
	hm.fails(403, "forbidden", "", "DELETE", groups+admins+"/members/"+tr.customerMember, nil)
	h.expect(true, customer, "manage", "user:"+tr.customerMember)
	// nesting a group hank can fill is the same grant
	staff := str(ca.do(201, "POST", "/v1/organizations/customer/groups", map[string]any{"name": "Staff"}), "id")
	hm.do(200, "PUT", groups+staff+"/members/"+hank, nil) // a role-less group grants nothing: allowed
	hm.fails(403, "forbidden", "", "PUT", groups+admins+"/members/group:"+staff, nil)
	h.expect(false, customer, "manage", "user:"+hank)
	// the refusal is audited
	denied := find(t, auditEvents(h, h.provider(), "/v1/organizations/customer/audit"), "group.member_add.denied", customer)
	wantEqual(t, "denied actor", denied["actor"], "user:"+hank)

	// a partner holding members only on the customer cannot join the group, nor make itself a member
	ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "organization:" + partner + "#admin", "scopes": []string{"members"}})
	pa := h.as(h.token(pat, ""))
	pa.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+pat, map[string]any{"roles": []string{"member"}})
	h.expect(false, customer, "access", "user:"+pat)
	pa.fails(403, "forbidden", "", "PUT", groups+admins+"/members/"+hank, nil)
	h.expect(false, customer, "manage", "user:"+pat)
	h.expect(false, customer, "manage", "user:"+hank)
}

func TestFinding2RedelegationDrawsOnEveryDelegation(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ca := h.as(tr.customerToken)
	ned := createUser(h, "ned@customer.example")
	bea := createUser(h, "bea@customer.example")
	putMember(h, testKey, tr.customer, ned, "member")
	putMember(h, testKey, tr.customer, bea, "member")
	until := h.clock.Now().Add(time.Hour)
	d1 := str(ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + ned, "scopes": []string{"members"}, "expiresAt": until}), "id")
	d2 := str(ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + ned, "scopes": []string{"branding"}}), "id")
	na := h.as(h.token(ned, tr.customer))

	// two local grants cannot be widened to the subtree, for bea or for himself
	for _, who := range []string{bea, ned} {
		na.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + who, "scopes": []string{"members", "branding"}, "subtree": true})
	}
	h.expect(false, "organization:"+tr.region, "manage_members", "user:"+bea)

	// combining both: via names both, the expiry is the earlier one's
	d3 := na.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + bea, "scopes": []string{"members", "branding"}})
	want := []string{d1, d2}
	slices.Sort(want)
	wantEqual(t, "via", strs(d3["via"]), want)
	wantTime(t, "expiresAt (capped by d1)", d3["expiresAt"], until)
	h.expect(true, "organization:"+tr.customer, "manage_members", "user:"+bea)

	// revoking either source revokes it
	out := ca.do(200, "DELETE", "/v1/delegations/"+d1, nil)
	if !slices.Contains(strs(out["revoked"]), str(d3, "id")) {
		t.Fatalf("revoking %s revoked %v, want %s among them", d1, out["revoked"], str(d3, "id"))
	}
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+bea)
	h.expect(false, "organization:"+tr.customer, "manage_branding", "user:"+bea)
	h.expect(true, "organization:"+tr.customer, "manage_branding", "user:"+ned) // d2 lives on
}

func TestFinding4AdminsAddOnlyUsersTheyMaySee(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	gus := createUser(h, "gus@sibling.example")
	putMember(h, testKey, tr.sibling, gus, "admin")
	ga := h.as(h.token(gus, tr.sibling))
	member := map[string]any{"roles": []string{"member"}}

	// a user of another tenant and an unknown id answer alike: no oracle
	unknown := ga.fails(404, "not_found", "", "PUT", "/v1/organizations/sibling/members/usr_nosuchuser0000", member)
	known := ga.fails(404, "not_found", "", "PUT", "/v1/organizations/sibling/members/"+tr.customerMember, member)
	wantEqual(t, "detail", strings.ReplaceAll(str(known, "detail"), tr.customerMember, "ID"), strings.ReplaceAll(str(unknown, "detail"), "usr_nosuchuser0000", "ID"))
	ga.fails(404, "", "", "GET", "/v1/users/"+tr.customerMember, nil)
	h.expect(false, "organization:"+tr.sibling, "access", "user:"+tr.customerMember)
	// the same for a delegation's grantee
	ga.fails(400, "invalid_argument", "grantee", "POST", "/v1/organizations/sibling/delegations", map[string]any{"grantee": "user:" + tr.customerMember, "scopes": []string{"audit"}})

	// users it may add: its own tenant's, and those of a domain it verified
	ga.do(200, "PUT", "/v1/organizations/sibling/members/"+tr.siblingMember, member)
	fresh := createUser(h, "sue@sibling.example")
	ga.fails(404, "not_found", "", "PUT", "/v1/organizations/sibling/members/"+fresh, member)
	h.provider().do(201, "POST", "/v1/organizations/sibling/domains", map[string]any{"domain": "sibling.example"})
	h.provider().do(200, "POST", "/v1/organizations/sibling/domains/sibling.example/verify", map[string]any{"method": "manual", "reason": "test"})
	ga.do(201, "PUT", "/v1/organizations/sibling/members/"+fresh, member)
	// anyone else joins by accepting an invitation
	inv := ga.do(201, "POST", "/v1/organizations/sibling/invitations", map[string]any{"email": "cole@customer.example"})
	h.as(h.token(tr.customerMember, "")).do(200, "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(true, "organization:"+tr.sibling, "access", "user:"+tr.customerMember)
}

func TestFinding5ImpersonationsAndLimitedKeysMintNothing(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ra := h.as(tr.resellerToken)
	p := h.provider()
	audit := map[string]any{"grantee": "user:" + tr.customerMember, "scopes": []string{"audit"}}

	for _, scopes := range [][]string{{"read-only"}, {"*"}} {
		im := ra.do(201, "POST", "/v1/impersonations", map[string]any{"target": "user:" + tr.customerAdmin, "organization": "customer",
			"reason": "ticket 9", "scopes": scopes, "duration": 600})
		imp := h.as(str(ra.do(201, "POST", "/v1/impersonations/"+str(im, "id")+"/token", nil), "accessToken"))
		imp.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/delegations", audit)
		imp.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "x@customer.example"})
		imp.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "shadow", "permissions": []string{"view_audit"}})
		imp.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+tr.customerMember, map[string]any{"roles": []string{"admin"}})
		imp.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"policy": map[string]any{"requireDelegationApproval": true}})
		ra.do(200, "POST", "/v1/impersonations/"+str(im, "id")+"/end", nil)
	}
	h.expect(false, "organization:"+tr.customer, "view_audit", "user:"+tr.customerMember)
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+tr.customerMember)

	// an API key limited to view_audit reads the audit log, and delegates nothing
	sa := str(p.do(201, "POST", "/v1/organizations/customer/service-accounts", map[string]any{"name": "auditor-bot", "roles": []string{"admin"}}), "id")
	key := str(p.do(201, "POST", "/v1/organizations/customer/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"view_audit"}}), "key")
	bot := h.as(key)
	bot.do(200, "GET", "/v1/organizations/customer/audit", nil)
	bot.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/delegations", audit)
	h.expect(false, "organization:"+tr.customer, "view_audit", "user:"+tr.customerMember)
}

func TestFinding6AncestorsCannotSwitchOffTheirRestraints(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ca := h.as(tr.customerToken)
	ra := h.as(tr.resellerToken)
	on := map[string]any{"policy": map[string]any{"requireImpersonationApproval": true, "requireDelegationApproval": true}}
	ca.do(200, "PATCH", "/v1/organizations/customer", on)
	for _, field := range []string{"requireImpersonationApproval", "requireDelegationApproval"} {
		ra.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"policy": map[string]any{field: false}})
	}
	got := ca.do(200, "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "policy", got["policy"].(map[string]any)["requireImpersonationApproval"], true)
	// so rita's impersonation waits for the customer
	im := ra.do(201, "POST", "/v1/impersonations", map[string]any{"target": "user:" + tr.customerMember, "organization": "customer", "reason": "check", "duration": 600})
	wantEqual(t, "status", im["status"], "pending")
	// the customer's own admin may switch them off
	ca.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"policy": map[string]any{"requireImpersonationApproval": false}})
}

func TestFinding7GrantsUnderADelegationDieWithIt(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ca := h.as(tr.customerToken)
	ned := createUser(h, "ned@customer.example")
	putMember(h, testKey, tr.customer, ned, "member")
	d := str(ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + ned, "scopes": []string{"members", "roles"},
		"expiresAt": h.clock.Now().Add(time.Hour)}), "id")
	na := h.as(h.token(ned, tr.customer))
	customer := "organization:" + tr.customer

	// he may define a role with what he holds, but not give it to himself
	na.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "shadow", "permissions": []string{"manage_members", "manage_roles"}})
	na.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+ned, map[string]any{"roles": []string{"member", "shadow"}})
	// what he grants others records the delegation it came from
	x := createUser(h, "xia@customer.example")
	na.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	added := find(t, auditEvents(h, h.provider(), "/v1/organizations/customer/audit"), "member.add", "user:"+x)
	if det, _ := added["details"].(map[string]any); !slices.Equal(strs(det["delegation"]), []string{d}) {
		t.Errorf("member.add details = %v, want delegation [%s]", added["details"], d)
	}
	// an invitation he sent dies with the delegation
	inv := na.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "late@customer.example"})
	invited := find(t, auditEvents(h, h.provider(), "/v1/organizations/customer/audit"), "invitation.create", "invitation:"+str(inv, "id"))
	if det, _ := invited["details"].(map[string]any); !slices.Equal(strs(det["delegation"]), []string{d}) {
		t.Errorf("invitation.create details = %v, want delegation [%s]", invited["details"], d)
	}
	ca.do(200, "DELETE", "/v1/delegations/"+d, nil)
	h.as("").fails(403, "forbidden", "", "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(false, customer, "manage_members", "user:"+ned)
	h.expect(false, customer, "manage_roles", "user:"+ned)
}

func TestFinding12DelegationNamesOnlyVisibleGroups(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ca := h.as(tr.customerToken)
	theirs := str(h.provider().do(201, "POST", "/v1/organizations/sibling/groups", map[string]any{"name": "Sibling staff"}), "id")
	unknown := ca.fails(400, "invalid_argument", "grantee", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "group:grp_nosuchgroup000", "scopes": []string{"audit"}})
	other := ca.fails(400, "invalid_argument", "grantee", "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "group:" + theirs, "scopes": []string{"audit"}})
	wantEqual(t, "detail", strings.ReplaceAll(str(other, "detail"), theirs, "ID"), strings.ReplaceAll(str(unknown, "detail"), "grp_nosuchgroup000", "ID"))
	ours := str(ca.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "Region staff"}), "id")
	ca.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "group:" + ours, "scopes": []string{"audit"}})
}

// TestRoleChangeOfOneHolderKeepsTheOthers: a custom role's binding in an
// organization is shared by its holders; changing or removing one holder's
// roles must not unbind the others (the binding structure used to be deleted
// with the first holder's change).
func TestRoleChangeOfOneHolderKeepsTheOthers(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	hank, _ := peopleManager(h, tr)
	ivy := createUser(h, "ivy@customer.example")
	putMember(h, testKey, tr.customer, ivy, "member", "people-manager")
	customer := "organization:" + tr.customer
	h.expect(true, customer, "manage_members", "user:"+hank)
	h.expect(true, customer, "manage_members", "user:"+ivy)
	ca := h.as(tr.customerToken)
	ca.do(200, "PUT", "/v1/organizations/customer/members/"+hank, map[string]any{"roles": []string{"member"}})
	h.expect(false, customer, "manage_members", "user:"+hank)
	h.expect(true, customer, "manage_members", "user:"+ivy)
	putMember(h, testKey, tr.customer, hank, "member", "people-manager")
	ca.do(204, "DELETE", "/v1/organizations/customer/members/"+hank, nil)
	h.expect(false, customer, "manage_members", "user:"+hank)
	h.expect(true, customer, "manage_members", "user:"+ivy)
}

// TestInvitationGrantsNoMoreThanWhenSent: an invitation is the inviter's
// grant of what its roles carried when it was sent; a role widened meanwhile
// (by someone else) is not granted through it (found by TestAuthorizationModel:
// a key limited to manage_members invited with a role later given manage_roles).
func TestInvitationGrantsNoMoreThanWhenSent(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "helper", "permissions": []string{"view_audit"}})
	inv := h.as(tr.customerToken).do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "wes@customer.example", "roles": []string{"helper"}})
	p.do(200, "PATCH", "/v1/organizations/customer/roles/helper", map[string]any{"permissions": []string{"view_audit", "manage_roles"}})
	h.as("").fails(409, "invitation_widened", "", "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	p.do(200, "PATCH", "/v1/organizations/customer/roles/helper", map[string]any{"permissions": []string{"view_audit"}})
	m := h.as("").do(200, "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(true, "organization:"+tr.customer, "view_audit", "user:"+str(m, "user"))
}

// TestFinding1JoiningAnAdminSetGainsItsDelegations: a delegation to an
// organization's admins is held by whoever joins that set, so making someone
// an admin there grants the delegated scope too — the grantor of that admin
// role must hold it (found by TestAuthorizationModel).
func TestFinding1JoiningAnAdminSetGainsItsDelegations(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	partner, pat, bob := newPartner(h)
	desk := createOrg(h, testKey, "Partner desk", "partner-desk", partner)
	h.as(tr.customerToken).do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "organization:" + desk + "#admin", "scopes": []string{"members"}})
	// pat governs the desk from above but holds nothing on the customer
	pa := h.as(h.token(pat, partner))
	pa.fails(403, "forbidden", "", "PUT", "/v1/organizations/partner-desk/members/"+bob, map[string]any{"roles": []string{"admin"}})
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+bob)
	// a plain member role is his to give
	pa.do(201, "PUT", "/v1/organizations/partner-desk/members/"+bob, map[string]any{"roles": []string{"member"}})
}

// TestLimitedKeyInvitationGrantsWithinItsLimit: an invitation is weighed, when
// accepted, against its inviter as limited by the API key it was sent with. A
// key limited to manage_members on an admin service account once invited a
// user whose earlier membership (status invited, roles admin) became active
// with admin's permissions: the acceptance was weighed against the service
// account without the key's limit (found by TestAuthorizationModel).
func TestLimitedKeyInvitationGrantsWithinItsLimit(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	customer := "organization:" + tr.customer
	sa := str(p.do(201, "POST", "/v1/organizations/customer/service-accounts", map[string]any{"name": "people-bot", "roles": []string{"admin"}}), "id")
	newKey := func() (string, string) {
		k := p.do(201, "POST", "/v1/organizations/customer/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"manage_members"}})
		return str(k, "key"), str(k, "id")
	}
	key, _ := newKey()
	bot := h.as(key)

	// the key cannot invite an admin outright
	bot.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "ivy@customer.example", "roles": []string{"admin"}})
	// an admin parks ivy's membership as invited with admin; the key invites her as a member
	ivy := createUser(h, "ivy@customer.example")
	p.do(201, "PUT", "/v1/organizations/customer/members/"+ivy, map[string]any{"roles": []string{"admin"}, "status": "invited"})
	h.expect(false, customer, "manage", "user:"+ivy)
	inv := bot.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "ivy@customer.example", "roles": []string{"member"}})
	// accepting would activate admin: not the key's to grant
	h.as("").fails(403, "forbidden", "", "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(false, customer, "manage", "user:"+ivy)
	h.expect(false, customer, "access", "user:"+ivy)
	got := p.do(200, "GET", "/v1/organizations/customer/members/"+ivy, nil)
	wantEqual(t, "status after refusal", got["status"], "invited")

	// a plain member invitation is the key's to grant
	inv = bot.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "ora@customer.example", "roles": []string{"member"}})
	m := h.as("").do(200, "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(true, customer, "access", "user:"+str(m, "user"))
	h.expect(false, customer, "manage", "user:"+str(m, "user"))

	// an invitation dies with the key it was sent with
	key2, id2 := newKey()
	inv = h.as(key2).do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "pia@customer.example", "roles": []string{"member"}})
	p.do(204, "DELETE", "/v1/organizations/customer/service-accounts/"+sa+"/keys/"+id2, nil)
	out := h.as("").fails(403, "forbidden", "", "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	if !strings.Contains(str(out, "detail"), "revoked") {
		t.Errorf("refusal after the key's revocation: %v", out)
	}
}
