package api_test

import (
	"slices"
	"testing"
)

// TestSCIMGoogleWorkspaceLifecycle drives the requests Google Workspace's
// automated user provisioning (configured on a custom SAML app) sends: a
// probe listing one user when the connection is saved, a userName lookup
// before each create, POST of the user, updates as PATCH replace of single
// attributes, suspension as active false and reactivation, and DELETE when
// the user leaves the app's scope with "delete" chosen. Google pushes users
// only, not groups.
func TestSCIMGoogleWorkspaceLifecycle(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	// the connection probe: a list of at most one user
	if out := w.must(200, "GET", "/scim/v2/acme/Users?count=1", nil); out["itemsPerPage"] != float64(0) || out["totalResults"] != float64(0) {
		t.Fatalf("probe: %v", out)
	}
	if out := w.must(200, "GET", `/scim/v2/acme/Users?filter=userName%20eq%20%22gail%40acme.example%22`, nil); out["totalResults"] != float64(0) {
		t.Fatalf("lookup before create: %v", out)
	}
	out := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{
		"schemas": []string{scimCore}, "userName": "gail@acme.example", "active": true,
		"name":   map[string]any{"givenName": "Gail", "familyName": "Gomez"},
		"emails": []any{map[string]any{"value": "gail@acme.example", "type": "work", "primary": true}},
	})
	gail := str(out, "id")
	h.expect(true, "document:d1", "view", "user:"+gail)
	if out := w.must(200, "GET", `/scim/v2/acme/Users?filter=userName%20eq%20%22gail%40acme.example%22`, nil); out["totalResults"] != float64(1) {
		t.Fatalf("lookup after create: %v", out)
	}
	// a rename in the directory: one replace per attribute
	out = w.must(200, "PATCH", "/scim/v2/acme/Users/"+gail, patchOps(
		op("replace", "name.givenName", "Abigail"),
		op("replace", "name.familyName", "Gomez"),
	))
	if out["name"].(map[string]any)["givenName"] != "Abigail" {
		t.Fatalf("after rename: %v", out)
	}
	if u := h.must(200, "GET", "/v1/users/"+gail, nil); u["name"] != "Abigail Gomez" {
		t.Fatalf("user row after rename: %v", u)
	}
	// suspended in Workspace: active false ends access at once
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+gail, patchOps(op("replace", "active", false)))
	h.expect(false, "document:d1", "view", "user:"+gail)
	if st, _ := w.member(gail); st != "suspended" {
		t.Fatalf("after suspension: %q", st)
	}
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+gail, patchOps(op("replace", "active", true)))
	h.expect(true, "document:d1", "view", "user:"+gail)
	// removed from the app's scope with deletion chosen
	w.must(204, "DELETE", "/scim/v2/acme/Users/"+gail, nil)
	h.expect(false, "document:d1", "view", "user:"+gail)
	w.fails(404, "", "GET", "/scim/v2/acme/Users/"+gail, nil)
	h.must(200, "GET", "/v1/users/"+gail, nil) // the user remains; its membership is gone
}

// TestSCIMOneLoginLifecycle drives the shapes OneLogin's SCIM provisioner
// sends: a create carrying the enterprise extension, attribute updates as
// PATCH whose paths name extension attributes by their full URN (and
// replaces whose value map is keyed by the URN), group membership changed
// with PATCH add of members and remove through a members[value eq …] path,
// deactivation as PATCH replace active, then DELETE.
func TestSCIMOneLoginLifecycle(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	out := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{
		"schemas": []string{scimCore, scimEnterprise}, "userName": "olga@acme.example", "externalId": "112233",
		"name":         map[string]any{"givenName": "Olga", "familyName": "Olsen"},
		"emails":       []any{map[string]any{"value": "olga@acme.example", "primary": true}},
		scimEnterprise: map[string]any{"department": "Sales", "manager": map[string]any{"value": "mgr-1"}},
	})
	olga := str(out, "id")
	pete := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"schemas": []string{scimCore}, "userName": "pete@acme.example"}), "id")
	// extension attributes by URN path, and in a no-path value map
	out = w.must(200, "PATCH", "/scim/v2/acme/Users/"+olga, patchOps(
		op("replace", scimEnterprise+":department", "Field Sales"),
		op("replace", "", map[string]any{scimEnterprise + ":costCenter": "CC-7", "title": "Account Executive"}),
	))
	ext, _ := out[scimEnterprise].(map[string]any)
	if ext["department"] != "Field Sales" || ext["costCenter"] != "CC-7" || out["title"] != "Account Executive" {
		t.Fatalf("after extension patch: %v", out)
	}
	// a group, then membership by PATCH add and remove by filter
	g := str(w.must(201, "POST", "/scim/v2/acme/Groups", map[string]any{"schemas": []string{scimGroup}, "displayName": "OneLogin Sales"}), "id")
	w.must(200, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(op("add", "members", []any{map[string]any{"value": olga}, map[string]any{"value": pete}})))
	if got := w.groupMembers(g); len(got) != 2 || !slices.Contains(got, olga) || !slices.Contains(got, pete) {
		t.Fatalf("members after add: %v", got)
	}
	h.expect(true, "group:"+g, "member", "user:"+olga)
	// the User shows the group (read-only groups attribute)
	if out := w.must(200, "GET", "/scim/v2/acme/Users/"+olga+"?attributes=groups", nil); len(out["groups"].([]any)) != 1 {
		t.Fatalf("groups of the user: %v", out)
	}
	w.must(200, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(op("remove", `members[value eq "`+pete+`"]`, nil)))
	if got := w.groupMembers(g); !slices.Equal(got, []string{olga}) {
		t.Fatalf("members after remove: %v", got)
	}
	h.expect(false, "group:"+g, "member", "user:"+pete)
	// the group mapped to a role, then deactivation takes everything
	h.as(w.adminTok).do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "OneLogin Sales", "roles": []string{"admin"}}}})
	h.expect(true, "document:d1", "edit", "user:"+olga)
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+olga, patchOps(op("replace", "active", false)))
	h.expect(false, "document:d1", "view", "user:"+olga)
	h.expect(false, "group:"+g, "member", "user:"+olga)
	w.must(204, "DELETE", "/scim/v2/acme/Users/"+olga, nil)
	w.must(204, "DELETE", "/scim/v2/acme/Groups/"+g, nil)
	h.expect(true, "document:d1", "view", "user:"+pete)
}
