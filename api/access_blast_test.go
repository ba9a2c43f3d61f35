package api_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBlastRadiusOfDirectoryChangesAsAttackers weighs directory changes over
// HTTP: the provider and the customer's admin see what adding a group role,
// removing a member, revoking a delegation and moving a region would grant
// and revoke, and nothing is applied; a caller who could not make a change
// gets, from the blast radius, the refusal the endpoint making it gives (the
// customer's admin on the sibling tenant: 404; a delegate without the scope,
// an impersonation: the endpoint's 403), and one who could make it but
// audits nothing is refused the review (403); bad input names the field.
func TestBlastRadiusOfDirectoryChangesAsAttackers(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	admin := h.as(tr.customerToken)
	grp := str(p.do(201, "POST", "/v1/organizations/customer/groups", map[string]any{"name": "Ops"}), "id")
	p.do(200, "PUT", "/v1/organizations/customer/groups/"+grp+"/members/"+tr.customerMember, nil)
	sibGrp := str(p.do(201, "POST", "/v1/organizations/sibling/groups", map[string]any{"name": "Sib"}), "id")
	dlg := str(p.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + tr.siblingMember, "scopes": []string{"members"}, "subtree": true}), "id")
	sibDlg := str(p.do(201, "POST", "/v1/organizations/sibling/delegations", map[string]any{"grantee": "user:" + tr.customerMember, "scopes": []string{"members"}}), "id")

	has := func(out map[string]any, side, subject, resource, perm string) bool {
		list, _ := out[side].([]any)
		for _, x := range list {
			m := x.(map[string]any)
			if m["subject"] == subject && m["resource"] == resource && m["permission"] == perm {
				return true
			}
		}
		return false
	}
	// adding the admin role to the group: its member gains manage on the customer and its region
	for _, c := range []caller{p, admin} {
		out := c.do(200, "POST", "/v1/access/blast-radius", map[string]any{"addGroupRole": map[string]any{"organization": "customer", "group": grp, "role": "admin"}})
		if !has(out, "gained", "user:"+tr.customerMember, "organization:"+tr.customer, "manage") || !has(out, "gained", "user:"+tr.customerMember, "organization:"+tr.region, "manage") {
			t.Fatalf("blast radius of making group Ops admin: %v", out)
		}
	}
	if roles := strs(p.do(200, "GET", "/v1/organizations/customer/groups/"+grp, nil)["roles"]); len(roles) != 0 {
		t.Fatalf("the blast radius applied its change: the group's roles are %v", roles)
	}
	// removing the member: it loses access to the customer
	out := admin.do(200, "POST", "/v1/access/blast-radius", map[string]any{"removeMember": map[string]any{"organization": "customer", "user": tr.customerMember}})
	if !has(out, "lost", "user:"+tr.customerMember, "organization:"+tr.customer, "access") {
		t.Fatalf("blast radius of removing %s: %v", tr.customerMember, out)
	}
	p.do(200, "GET", "/v1/organizations/customer/members/"+tr.customerMember, nil)
	// revoking the delegation: the sibling's user (outside the customer admin's audit) loses manage_members, counted not named
	out = admin.do(200, "POST", "/v1/access/blast-radius", map[string]any{"revokeDelegation": map[string]any{"delegation": dlg}})
	if raw, _ := json.Marshal(out); strings.Contains(string(raw), tr.siblingMember) || out["totals"].(map[string]any)["outside"].(float64) < 1 {
		t.Fatalf("the customer admin's blast radius of revoking delegation %s names or misses the outside delegate: %s", dlg, raw)
	}
	out = p.do(200, "POST", "/v1/access/blast-radius", map[string]any{"revokeDelegation": map[string]any{"delegation": dlg}})
	if !has(out, "lost", "user:"+tr.siblingMember, "organization:"+tr.customer, "manage_members") {
		t.Fatalf("blast radius of revoking delegation %s: %v", dlg, out)
	}
	// moving the region to the top level: the reseller's admin loses it (the provider may)
	out = p.do(200, "POST", "/v1/access/blast-radius", map[string]any{"moveOrganization": map[string]any{"organization": "region", "parent": ""}})
	if !has(out, "lost", "user:"+tr.resellerAdmin, "organization:"+tr.region, "manage") {
		t.Fatalf("blast radius of moving the region to the top: %v", out)
	}
	if org := p.do(200, "GET", "/v1/organizations/region", nil); org["parent"] != tr.customer {
		t.Fatalf("the blast radius moved the region: %v", org)
	}

	// a refused change: the blast radius answers as the endpoint making it
	same := func(who string, c caller, change map[string]any, method, path string, body any) {
		t.Helper()
		status, real := h.callAs(c.key, method, path, body)
		if status < 400 {
			t.Fatalf("%s: %s %s was made (%d): the test needs a refused change", who, method, path, status)
		}
		got := c.fails(status, str(real, "code"), "", "POST", "/v1/access/blast-radius", change)
		if got["field"] != real["field"] {
			t.Fatalf("%s: the blast radius's refusal %v, the endpoint's %v", who, got, real)
		}
	}
	// the customer's admin on the sibling tenant: 404 everywhere
	same("customer admin, sibling member", admin, map[string]any{"removeMember": map[string]any{"organization": "sibling", "user": tr.siblingMember}},
		"DELETE", "/v1/organizations/sibling/members/"+tr.siblingMember, nil)
	same("customer admin, sibling group", admin, map[string]any{"addGroupRole": map[string]any{"organization": "sibling", "group": sibGrp, "role": "admin"}},
		"PATCH", "/v1/organizations/sibling/groups/"+sibGrp, map[string]any{"roles": []string{"admin"}})
	same("customer admin, sibling group member", admin, map[string]any{"addGroupMember": map[string]any{"organization": "sibling", "group": sibGrp, "member": "user:" + tr.siblingMember}},
		"PUT", "/v1/organizations/sibling/groups/"+sibGrp+"/members/"+tr.siblingMember, nil)
	same("customer admin, sibling delegation", admin, map[string]any{"revokeDelegation": map[string]any{"delegation": sibDlg}},
		"DELETE", "/v1/delegations/"+sibDlg, nil)
	same("customer admin, moving the sibling", admin, map[string]any{"moveOrganization": map[string]any{"organization": "sibling", "parent": "customer"}},
		"POST", "/v1/organizations/sibling/move", map[string]any{"parent": "customer", "dryRun": true})
	same("customer admin, moving its region under the sibling", admin, map[string]any{"moveOrganization": map[string]any{"organization": "region", "parent": "sibling"}},
		"POST", "/v1/organizations/region/move", map[string]any{"parent": "sibling", "dryRun": true})
	// a plain member; the delegate of the members scope granting roles
	member := h.as(h.token(tr.customerMember, tr.customer))
	same("plain member", member, map[string]any{"putMember": map[string]any{"organization": "customer", "user": tr.customerMember, "roles": []string{"admin"}}},
		"PUT", "/v1/organizations/customer/members/"+tr.customerMember, map[string]any{"roles": []string{"admin"}})
	delegate := h.as(h.token(tr.siblingMember, ""))
	same("delegate, granting admin", delegate, map[string]any{"putMember": map[string]any{"organization": "customer", "user": tr.regionMember, "roles": []string{"admin"}}},
		"PUT", "/v1/organizations/customer/members/"+tr.regionMember, map[string]any{"roles": []string{"admin"}})
	// the delegate may remove a member, but audits nothing: no review
	delegate.fails(403, "forbidden", "", "POST", "/v1/access/blast-radius", map[string]any{"removeMember": map[string]any{"organization": "customer", "user": tr.customerMember}})
	// an impersonation of the customer's admin grants no roles, and reviews nothing
	sue, sueToken := supportUser(h, "sue@provider.example")
	im := h.as(sueToken).do(201, "POST", "/v1/impersonations", map[string]any{"actor": "user:" + sue, "target": "user:" + tr.customerAdmin,
		"organization": "customer", "reason": "ticket 9", "scopes": []string{"*"}})
	imp := h.as(str(h.as(sueToken).do(201, "POST", "/v1/impersonations/"+str(im, "id")+"/token", nil), "accessToken"))
	same("impersonation, granting a role", imp, map[string]any{"addGroupRole": map[string]any{"organization": "customer", "group": grp, "role": "admin"}},
		"PATCH", "/v1/organizations/customer/groups/"+grp, map[string]any{"roles": []string{"admin"}})
	imp.fails(403, "forbidden", "", "POST", "/v1/access/blast-radius", map[string]any{"removeGroupMember": map[string]any{"organization": "customer", "group": grp, "member": "user:" + tr.customerMember}})
	p.do(200, "GET", "/v1/organizations/customer/members/"+tr.customerMember, nil) // nothing was made along the way

	// bad input names the field
	p.fails(400, "", "addGroupRole.role", "POST", "/v1/access/blast-radius", map[string]any{"addGroupRole": map[string]any{"organization": "customer", "group": grp}})
	p.fails(400, "", "moveOrganization.parent", "POST", "/v1/access/blast-radius", map[string]any{"moveOrganization": map[string]any{"organization": "region"}})
	p.fails(400, "", "removeMember", "POST", "/v1/access/blast-radius", map[string]any{"addGroupRole": map[string]any{"organization": "customer", "group": grp, "role": "admin"},
		"removeMember": map[string]any{"organization": "customer", "user": tr.customerMember}})
	p.fails(400, "", "updates", "POST", "/v1/access/blast-radius", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": rel("document:plan", "viewer", "user:x")}},
		"removeMember": map[string]any{"organization": "customer", "user": tr.customerMember}})
	p.fails(400, "", "revokeDelegation", "POST", "/v1/access/blast-radius", map[string]any{"revokeDelegation": "dlg_x"})
	p.fails(400, "", "updates", "POST", "/v1/access/blast-radius", map[string]any{})
}
