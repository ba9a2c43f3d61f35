package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	scimCore       = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	scimEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	scimPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	scimErrorURN   = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// scimWorld: organizations acme (verified domain acme.example, an admin who
// created acme's SCIM token) and globex (its own token), and a document of acme.
type scimWorld struct {
	h                   *harness
	acme, globex        string
	admin, adminTok     string
	acmeSCIM, globexSCI string
}

func newSCIMWorld(t *testing.T) *scimWorld {
	h := newHarness(t, docApp)
	w := &scimWorld{h: h}
	w.acme = createOrg(h, testKey, "Acme", "acme", "")
	w.globex = createOrg(h, testKey, "Globex", "globex", "")
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/acme/domains", map[string]any{"domain": "acme.example"})
	p.do(200, "POST", "/v1/organizations/acme/domains/acme.example/verify", map[string]any{"method": "manual", "reason": "test fixture"})
	w.admin = createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", w.admin, "admin")
	w.adminTok = h.token(w.admin, "")
	out := h.as(w.adminTok).do(201, "POST", "/v1/organizations/acme/scim/tokens", map[string]any{"name": "entra"})
	w.acmeSCIM = str(out, "token")
	if !strings.HasPrefix(w.acmeSCIM, "scim_") || str(out, "id") == "" {
		t.Fatalf("SCIM token %v", out)
	}
	w.globexSCI = str(p.do(201, "POST", "/v1/organizations/globex/scim/tokens", nil), "token")
	h.write(rel("document:d1", "org", "organization:"+w.acme))
	return w
}

// scim sends a SCIM request with tok and checks the media type and, for
// errors, the SCIM error schema (status as a string).
func (w *scimWorld) scim(tok, method, path string, body any, headers ...string) (int, map[string]any, http.Header) {
	w.h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, w.h.url+path, rd)
	req.Header.Set("Content-Type", "application/scim+json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			w.h.t.Fatalf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/scim+json" {
		w.h.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if resp.StatusCode >= 400 {
		if !slices.Contains(strs(out["schemas"]), scimErrorURN) || out["status"] != itoa(resp.StatusCode) {
			w.h.t.Errorf("%s %s: %d is not a SCIM error with status as a string: %v", method, path, resp.StatusCode, out)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// must sends with acme's token and requires status want.
func (w *scimWorld) must(want int, method, path string, body any, headers ...string) map[string]any {
	w.h.t.Helper()
	got, out, _ := w.scim(w.acmeSCIM, method, path, body, headers...)
	if got != want {
		w.h.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, out)
	}
	return out
}

// fails sends with acme's token and requires a SCIM error of status and scimType.
func (w *scimWorld) fails(status int, scimType, method, path string, body any, headers ...string) {
	w.h.t.Helper()
	got, out, _ := w.scim(w.acmeSCIM, method, path, body, headers...)
	if got != status || scimType != "" && out["scimType"] != scimType {
		w.h.t.Errorf("%s %s: %d %v, want %d scimType %q", method, path, got, out, status, scimType)
	}
}

func patchOps(ops ...map[string]any) map[string]any {
	list := make([]any, len(ops))
	for i, o := range ops {
		list[i] = o
	}
	return map[string]any{"schemas": []string{scimPatchOp}, "Operations": list}
}

func op(o, path string, value any) map[string]any {
	m := map[string]any{"op": o}
	if path != "" {
		m["path"] = path
	}
	if value != nil {
		m["value"] = value
	}
	return m
}

// member reads acme's membership of user: its status, or "" when there is none.
func (w *scimWorld) member(user string) (string, []string) {
	w.h.t.Helper()
	got, out := w.h.call("GET", "/v1/organizations/acme/members/"+user, nil)
	if got == 404 {
		return "", nil
	}
	if got != 200 {
		w.h.t.Fatalf("member %s: %d %v", user, got, out)
	}
	return str(out, "status"), strs(out["roles"])
}

func (w *scimWorld) groupMembers(group string) []string {
	w.h.t.Helper()
	out := w.h.must(200, "GET", "/v1/organizations/acme/groups/"+group+"/members", nil)
	var ids []string
	for _, m := range out["members"].([]any) {
		ids = append(ids, str(m.(map[string]any), "id"))
	}
	return ids
}

func (w *scimWorld) groupRoles(group string) []string {
	w.h.t.Helper()
	return strs(w.h.must(200, "GET", "/v1/organizations/acme/groups/"+group, nil)["roles"])
}

func TestSCIMEntraLifecycle(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	if out := w.must(200, "GET", `/scim/v2/acme/Users?filter=userName+eq+"ann@acme.example"`, nil); out["totalResults"] != float64(0) {
		t.Fatalf("filter before create: %v", out)
	}
	// create, as Entra ID sends it
	out := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{
		"schemas": []string{scimCore, scimEnterprise}, "externalId": "ann-oid", "userName": "ann@acme.example", "active": true,
		"displayName": "Ann Archer", "emails": []any{map[string]any{"primary": true, "type": "work", "value": "ann@acme.example"}},
		"name":         map[string]any{"formatted": "Ann Archer", "familyName": "Archer", "givenName": "Ann"},
		scimEnterprise: map[string]any{"department": "Engineering"},
	})
	ann := str(out, "id")
	meta, _ := out["meta"].(map[string]any)
	if !strings.HasPrefix(ann, "usr_") || meta["version"] != `W/"1"` || meta["resourceType"] != "User" {
		t.Fatalf("created %v", out)
	}
	if st, roles := w.member(ann); st != "active" || !slices.Equal(roles, []string{"member"}) {
		t.Fatalf("after create: membership %q %v", st, roles)
	}
	h.expect(true, "document:d1", "view", "user:"+ann)
	annTok := h.token(ann, "acme")
	// Entra's PATCH: capitalised ops, a filtered path, a sub-attribute, an extension path
	out = w.must(200, "PATCH", "/scim/v2/acme/Users/"+ann, patchOps(
		op("Replace", `emails[type eq "work"].value`, "ann.archer@acme.example"),
		op("Replace", "name.givenName", "Annie"),
		op("Add", scimEnterprise+":department", "R&D"),
		op("Replace", "", map[string]any{"displayName": "Annie Archer", "active": "True"}),
	))
	if out["displayName"] != "Annie Archer" || out[scimEnterprise].(map[string]any)["department"] != "R&D" ||
		out["name"].(map[string]any)["givenName"] != "Annie" || out["meta"].(map[string]any)["version"] != `W/"2"` {
		t.Fatalf("after patch: %v", out)
	}
	if u := h.must(200, "GET", "/v1/users/"+ann, nil); u["email"] != "ann.archer@acme.example" || u["name"] != "Annie Archer" {
		t.Fatalf("user row after patch: %v", u)
	}
	// a group, then its members as Entra adds them
	g := str(w.must(201, "POST", "/scim/v2/acme/Groups", map[string]any{"schemas": []string{scimGroup}, "externalId": "eng-oid", "displayName": "Engineering", "members": []any{}}), "id")
	w.must(200, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(op("Add", "members", []any{map[string]any{"value": ann}})))
	if got := w.groupMembers(g); !slices.Equal(got, []string{ann}) {
		t.Fatalf("group members %v", got)
	}
	h.expect(true, "group:"+g, "member", "user:"+ann)
	// role change: a role set by hand, then the mapping's (source scim)
	h.must(200, "PATCH", "/v1/organizations/acme/groups/"+g, map[string]any{"roles": []string{"member"}})
	h.expect(false, "document:d1", "edit", "user:"+ann)
	h.as(w.adminTok).do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Engineering", "roles": []string{"admin"}}}})
	if got := w.groupRoles(g); !slices.Equal(got, []string{"member", "admin"}) {
		t.Fatalf("group roles after mapping %v", got)
	}
	h.expect(true, "document:d1", "edit", "user:"+ann)
	// deactivation ends access at once: the next check, the user's token
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+ann, patchOps(op("Replace", "active", "False")))
	if st, _ := w.member(ann); st != "suspended" {
		t.Fatalf("after active False: membership %q", st)
	}
	h.expect(false, "document:d1", "view", "user:"+ann)
	h.expect(false, "document:d1", "edit", "user:"+ann)
	if got, _ := h.callAs(annTok, "GET", "/v1/users/"+ann, nil); got != 401 {
		t.Fatalf("the deactivated user's token for acme: %d, want 401", got)
	}
	// reactivation restores the membership and its group place
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+ann, patchOps(op("Replace", "", map[string]any{"active": true})))
	h.expect(true, "document:d1", "edit", "user:"+ann)
	// the mapping goes: the role set by hand stays
	h.as(w.adminTok).do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{}})
	if got := w.groupRoles(g); !slices.Equal(got, []string{"member"}) {
		t.Fatalf("group roles after the mapping went %v", got)
	}
	h.expect(false, "document:d1", "edit", "user:"+ann)
	// Entra removes a member by filter path
	w.must(200, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(op("Remove", `members[value eq "`+ann+`"]`, nil)))
	if got := w.groupMembers(g); len(got) != 0 {
		t.Fatalf("group members after remove %v", got)
	}
	h.expect(false, "group:"+g, "member", "user:"+ann)
	// delete: the membership goes, the user stays
	w.must(204, "DELETE", "/scim/v2/acme/Users/"+ann, nil)
	if st, _ := w.member(ann); st != "" {
		t.Fatalf("after delete: membership %q", st)
	}
	h.expect(false, "document:d1", "view", "user:"+ann)
	h.must(200, "GET", "/v1/users/"+ann, nil)
	w.fails(404, "", "GET", "/scim/v2/acme/Users/"+ann, nil)
	// every step is on acme's audit chain, the token named
	events := h.must(200, "GET", "/v1/organizations/acme/audit?action=scim.user.update", nil)["events"].([]any)
	if len(events) == 0 || events[0].(map[string]any)["actor"] != "user:"+w.admin {
		t.Fatalf("audit of SCIM updates: %v", events)
	}
}

func TestSCIMOktaLifecycle(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	bob := map[string]any{
		"schemas": []string{scimCore}, "userName": "bob@acme.example", "externalId": "00u1bob",
		"name":        map[string]any{"givenName": "Bob", "familyName": "Baker"},
		"emails":      []any{map[string]any{"primary": true, "value": "bob@acme.example", "type": "work"}},
		"displayName": "Bob Baker", "locale": "en-US", "groups": []any{}, "password": "hunter2-never-kept", "active": true,
	}
	out := w.must(201, "POST", "/scim/v2/acme/Users", bob)
	id := str(out, "id")
	if _, kept := out["password"]; kept {
		t.Fatal("the password was kept")
	}
	carl := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"schemas": []string{scimCore}, "userName": "carl@acme.example",
		"emails": []any{map[string]any{"value": "carl@acme.example"}}, "active": true}), "id")
	// Okta updates with PUT of the whole user
	bob["name"] = map[string]any{"givenName": "Robert", "familyName": "Baker"}
	bob["displayName"] = "Robert Baker"
	w.must(200, "PUT", "/scim/v2/acme/Users/"+id, bob)
	if u := h.must(200, "GET", "/v1/users/"+id, nil); u["name"] != "Robert Baker" {
		t.Fatalf("after PUT: %v", u)
	}
	// group push with members
	g := str(w.must(201, "POST", "/scim/v2/acme/Groups", map[string]any{"schemas": []string{scimGroup}, "displayName": "Sales",
		"members": []any{map[string]any{"value": id, "display": "bob@acme.example"}}}), "id")
	h.expect(true, "group:"+g, "member", "user:"+id)
	w.must(200, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(
		op("replace", "", map[string]any{"id": g, "displayName": "Sales Team"}),
		op("add", "members", []any{map[string]any{"value": carl}})))
	if got := w.groupMembers(g); !slices.Equal(got, []string{carl, id}) && !slices.Equal(got, []string{id, carl}) {
		t.Fatalf("members %v", got)
	}
	// the mapping names the group by its new name
	h.as(w.adminTok).do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Sales Team", "roles": []string{"admin"}}}})
	h.expect(true, "document:d1", "edit", "user:"+carl)
	// active toggles by PUT
	bob["active"] = false
	w.must(200, "PUT", "/scim/v2/acme/Users/"+id, bob)
	h.expect(false, "document:d1", "view", "user:"+id)
	h.expect(false, "group:"+g, "member", "user:"+id)
	bob["active"] = true
	w.must(200, "PUT", "/scim/v2/acme/Users/"+id, bob)
	h.expect(true, "document:d1", "edit", "user:"+id)
	// Okta's deactivation PATCH
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+carl, patchOps(op("replace", "", map[string]any{"active": false})))
	h.expect(false, "document:d1", "view", "user:"+carl)
	// replacing the group's members drops those not named
	w.must(200, "PUT", "/scim/v2/acme/Groups/"+g, map[string]any{"schemas": []string{scimGroup}, "displayName": "Sales Team", "members": []any{map[string]any{"value": carl}}})
	h.expect(false, "group:"+g, "member", "user:"+id)
	h.expect(false, "document:d1", "edit", "user:"+id)
	h.expect(true, "document:d1", "view", "user:"+id)
	// deleting the group takes what it granted
	w.must(204, "DELETE", "/scim/v2/acme/Groups/"+g, nil)
	h.must(404, "GET", "/v1/organizations/acme/groups/"+g, nil)
	w.must(204, "DELETE", "/scim/v2/acme/Users/"+id, nil)
	h.expect(false, "document:d1", "view", "user:"+id)
}
