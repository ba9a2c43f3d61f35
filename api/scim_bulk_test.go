package api_test

import (
	"slices"
	"testing"
)

// TestSCIMBulkStaysInItsOrganization: a Bulk request of acme's token reaches
// only acme's resources — another organization's user or group in a path is
// 404 for that operation alone, another organization's user named as a member
// stays pending — and the operations around them are kept.
func TestSCIMBulkStaysInItsOrganization(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	gx := str(w.scimAs(w.globexSCI, 201, "POST", "/scim/v2/globex/Users", map[string]any{"userName": "gus@globex.example"}), "id")
	gg := str(w.scimAs(w.globexSCI, 201, "POST", "/scim/v2/globex/Groups", map[string]any{"displayName": "Globex Ops", "members": []any{map[string]any{"value": gx}}}), "id")
	out := w.must(200, "POST", "/scim/v2/acme/Bulk", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"},
		"Operations": []any{
			map[string]any{"method": "DELETE", "path": "/Users/" + gx},
			map[string]any{"method": "PATCH", "path": "/Groups/" + gg, "data": patchOps(op("add", "members", []any{map[string]any{"value": gx}}))},
			map[string]any{"method": "POST", "path": "/Users", "bulkId": "a", "data": map[string]any{"userName": "amy@acme.example"}},
			map[string]any{"method": "POST", "path": "/Groups", "data": map[string]any{"displayName": "Acme Ops", "members": []any{map[string]any{"value": gx}, map[string]any{"value": "bulkId:a"}}}},
		}})
	var st []string
	for _, r := range out["Operations"].([]any) {
		st = append(st, str(r.(map[string]any), "status"))
	}
	if !slices.Equal(st, []string{"404", "404", "201", "201"}) {
		t.Fatalf("statuses %v: %v", st, out)
	}
	// globex's user and group are untouched; acme's group holds only acme's user
	h.expect(true, "group:"+gg, "member", "user:"+gx)
	if got := w.scimAs(w.globexSCI, 200, "GET", "/scim/v2/globex/Users/"+gx, nil); got["id"] != gx {
		t.Fatalf("globex's user after acme's bulk: %v", got)
	}
	list := w.must(200, "GET", "/scim/v2/acme/Groups?filter=displayName%20eq%20%22Acme%20Ops%22", nil)
	ag := str(list["Resources"].([]any)[0].(map[string]any), "id")
	h.expect(false, "group:"+ag, "member", "user:"+gx)
	if got := w.groupMembers(ag); len(got) != 1 || got[0] == gx {
		t.Fatalf("acme's group members: %v", got)
	}
}

// TestSCIMUserGroupsOnlyItsOrganization: a user in groups of two
// organizations shows each organization only its own groups.
func TestSCIMUserGroupsOnlyItsOrganization(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	u := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "dual@acme.example"}), "id")
	ag := str(w.must(201, "POST", "/scim/v2/acme/Groups", map[string]any{"displayName": "Acme Dual", "members": []any{map[string]any{"value": u}}}), "id")
	putMember(h, testKey, "globex", u, "member") // the provider makes the user a globex member too
	gg := str(w.scimAs(w.globexSCI, 201, "POST", "/scim/v2/globex/Groups", map[string]any{"displayName": "Globex Dual", "members": []any{map[string]any{"value": u}}}), "id")
	h.expect(true, "group:"+gg, "member", "user:"+u)
	groups, _ := w.must(200, "GET", "/scim/v2/acme/Users/"+u, nil)["groups"].([]any)
	if len(groups) != 1 || groups[0].(map[string]any)["value"] != ag {
		t.Fatalf("acme sees the user's groups %v, want only %s", groups, ag)
	}
	// globex has not provisioned the user: its SCIM answers 404, not acme's view
	w.scimAs(w.globexSCI, 404, "GET", "/scim/v2/globex/Users/"+u, nil)
}

// scimAs is must with another organization's token.
func (w *scimWorld) scimAs(tok string, want int, method, path string, body any) map[string]any {
	w.h.t.Helper()
	status, out, _ := w.scim(tok, method, path, body)
	if status != want {
		w.h.t.Fatalf("%s %s: %d, want %d: %v", method, path, status, want, out)
	}
	return out
}
