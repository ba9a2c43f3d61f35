package api_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAccessReviewAsOutsiderAuditorDelegateAndImpersonator attacks the
// access review over HTTP: a customer auditor (custom role with view_audit,
// token scoped to its organization) and an org API key limited to view_audit
// see their subtree only — other organizations' resources and users are 404,
// as if unknown, and users or paths outside (the reseller's admins who
// inherit, a partner's delegate, a foreign viewer) are counted, never named;
// a plain member, an org key without view_audit and an impersonation token
// are 403; a delegate of the members scope is a delegation path with its id;
// bad input names the field.
func TestAccessReviewAsOutsiderAuditorDelegateAndImpersonator(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	aud := createUser(h, "audra@customer.example")
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "reviewer", "permissions": []string{"view_audit"}})
	putMember(h, testKey, tr.customer, aud, "reviewer")
	auditor := h.as(h.token(aud, tr.customer))
	// a partner's user is delegated the members scope on the customer
	dlg := p.do(201, "POST", "/v1/organizations/customer/delegations", map[string]any{"grantee": "user:" + tr.siblingMember, "scopes": []string{"members"}, "subtree": true})
	// a document of the customer, viewed by a sibling user too
	h.write(rel("document:plan", "org", "organization:"+tr.customer), rel("document:plan", "viewer", "user:"+tr.siblingMember))
	h.write(rel("document:other", "org", "organization:"+tr.sibling))

	// the provider sees everyone, with paths
	all := p.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "document:plan", "permission": "view"})
	users := pluckUsers(all)
	for _, u := range []string{tr.customerAdmin, tr.customerMember, tr.resellerAdmin, tr.siblingMember, aud} {
		if !contains(users, "user:"+u) {
			t.Fatalf("provider who-can view document:plan: %v lacks %s", users, u)
		}
	}
	mm := p.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.customer, "permission": "manage_members"})
	if raw, _ := json.Marshal(mm); !strings.Contains(string(raw), str(dlg, "id")) || !strings.Contains(string(raw), `"kind":"delegation"`) {
		t.Fatalf("the delegate's path does not name delegation %s: %s", str(dlg, "id"), raw)
	}

	// the customer auditor: its subtree, outside counted not named
	got := auditor.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "document:plan", "permission": "view", "pageSize": 2})
	raw, _ := json.Marshal(got)
	for _, name := range []string{tr.siblingMember, tr.resellerAdmin, tr.reseller, tr.sibling} {
		if strings.Contains(string(raw), name) {
			t.Fatalf("the customer auditor is told about %s outside its subtree: %s", name, raw)
		}
	}
	totals, _ := got["totals"].(map[string]any)
	if totals["outside"].(float64) < 2 || got["nextCursor"] == "" {
		t.Fatalf("auditor who-can: totals %v, nextCursor %v: want at least the reseller admin and the sibling viewer outside, and a second page", totals, got["nextCursor"])
	}
	for _, res := range []string{"organization:" + tr.sibling, "organization:" + tr.reseller, "document:other", "platform:trellis", "document:unknown"} {
		auditor.fails(404, "not_found", "", "POST", "/v1/access/who-can", map[string]any{"resource": res, "permission": "view"})
	}
	auditor.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.region, "permission": "access"})
	auditor.fails(404, "not_found", "", "GET", "/v1/access/users/"+tr.siblingMember, nil)
	auditor.fails(404, "not_found", "", "GET", "/v1/access/users/"+tr.resellerAdmin, nil)
	auditor.fails(404, "not_found", "", "GET", "/v1/access/users/"+tr.regionMember+"?organization=sibling", nil)
	region := auditor.do(200, "GET", "/v1/access/users/"+tr.regionMember, nil)
	if orgs, _ := region["organizations"].([]any); len(orgs) != 1 || orgs[0].(map[string]any)["organization"] != tr.region {
		t.Fatalf("effective access of the region member, as the customer auditor: %v", region)
	}
	auditor.fails(404, "not_found", "", "POST", "/v1/access/blast-radius", map[string]any{"updates": []any{
		map[string]any{"operation": "touch", "relationship": rel("document:other", "viewer", "user:"+tr.customerMember)}}})

	// an org API key reading the audit log is an auditor of its organization; one without view_audit is not
	base := "/v1/organizations/customer/service-accounts"
	admin := str(p.do(201, "POST", base, map[string]any{"name": "review-bot", "roles": []string{"admin"}}), "id")
	reader := h.as(str(p.do(201, "POST", base+"/"+admin+"/keys", map[string]any{"permissions": []string{"view_audit"}}), "key"))
	reader.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.region, "permission": "access"})
	reader.fails(404, "not_found", "", "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.sibling, "permission": "access"})
	writer := h.as(str(p.do(201, "POST", base+"/"+admin+"/keys", map[string]any{"permissions": []string{"manage_members"}}), "key"))
	writer.fails(403, "forbidden", "", "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.customer, "permission": "access"})

	// a plain member, the delegate of another scope, and an impersonation are refused
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "forbidden", "", "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.customer, "permission": "access"})
	h.as(h.token(tr.siblingMember, "")).fails(403, "forbidden", "", "GET", "/v1/access/users/"+tr.customerMember, nil)
	sue, sueToken := supportUser(h, "sue@provider.example")
	im := h.as(sueToken).do(201, "POST", "/v1/impersonations", map[string]any{"actor": "user:" + sue, "target": "user:" + tr.customerAdmin,
		"organization": "customer", "reason": "ticket 9", "scopes": []string{"*"}})
	imp := h.as(str(h.as(sueToken).do(201, "POST", "/v1/impersonations/"+str(im, "id")+"/token", nil), "accessToken"))
	imp.fails(403, "forbidden", "", "POST", "/v1/access/who-can", map[string]any{"resource": "organization:" + tr.customer, "permission": "access"})
	imp.fails(403, "forbidden", "", "GET", "/v1/access/users/"+tr.customerMember, nil)
	// the impersonating support engineer can act on the customer's document: listed, as an impersonation
	after := p.do(200, "POST", "/v1/access/who-can", map[string]any{"resource": "document:plan", "permission": "view", "pageSize": 1000})
	if raw, _ := json.Marshal(after); !strings.Contains(string(raw), `"impersonation":"`+str(im, "id")+`"`) {
		t.Fatalf("who-can does not list the live impersonation %s: %s", str(im, "id"), raw)
	}

	// bad input names the field
	p.fails(400, "", "resource", "POST", "/v1/access/who-can", map[string]any{"permission": "view"})
	p.fails(400, "", "resource", "POST", "/v1/access/who-can", map[string]any{"resource": "not a ref", "permission": "view"})
	p.fails(400, "", "permission", "POST", "/v1/access/who-can", map[string]any{"resource": "document:plan"})
	p.fails(400, "", "cursor", "POST", "/v1/access/who-can", map[string]any{"resource": "document:plan", "permission": "view", "cursor": "!!"})
	p.fails(400, "", "updates", "POST", "/v1/access/blast-radius", map[string]any{"updates": []any{}})
	p.fails(400, "", "updates[0].operation", "POST", "/v1/access/blast-radius", map[string]any{"updates": []any{map[string]any{"operation": "upsert", "relationship": rel("document:plan", "viewer", "user:x")}}})

	// the blast radius of a change, computed and not applied
	br := p.do(200, "POST", "/v1/access/blast-radius", map[string]any{"updates": []any{
		map[string]any{"operation": "touch", "relationship": rel("document:plan", "banned", "user:"+tr.customerMember)}}})
	lost, _ := br["lost"].([]any)
	if len(lost) != 1 || lost[0].(map[string]any)["permission"] != "view" || lost[0].(map[string]any)["subject"] != "user:"+tr.customerMember {
		t.Fatalf("blast radius of banning %s: %v", tr.customerMember, br)
	}
	if h.check("document:plan", "view", "user:"+tr.customerMember) != "HAS_PERMISSION" {
		t.Fatal("the blast radius applied its change")
	}
}

func pluckUsers(out map[string]any) []string {
	var ids []string
	list, _ := out["users"].([]any)
	for _, u := range list {
		ids = append(ids, u.(map[string]any)["user"].(string))
	}
	return ids
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
