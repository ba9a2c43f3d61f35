package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestSCIMCrossOrganizationIsolation(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	ann := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "ann@acme.example"}), "id")
	// globex's token on acme's path answers exactly as an unknown organization
	got1, out1, _ := w.scim(w.globexSCI, "GET", "/scim/v2/acme/Users/"+ann, nil)
	got2, out2, _ := w.scim(w.globexSCI, "GET", "/scim/v2/no-such-org/Users/"+ann, nil)
	got3, out3, _ := w.scim(w.acmeSCIM, "GET", "/scim/v2/globex/Users", nil)
	if got1 != 404 || got2 != 404 || got3 != 404 || out1["detail"] != out2["detail"] || out1["detail"] != out3["detail"] {
		t.Fatalf("cross-org: %d %v / unknown: %d %v / acme on globex: %d %v", got1, out1, got2, out2, got3, out3)
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE"} {
		if got, _, _ := w.scim(w.globexSCI, m, "/scim/v2/acme/Users/"+ann, patchOps(op("replace", "active", false))); got != 404 {
			t.Errorf("globex %s on acme's user: %d", m, got)
		}
	}
	// a user of acme is not globex's to see or change through its own path either
	if got, _, _ := w.scim(w.globexSCI, "GET", "/scim/v2/globex/Users/"+ann, nil); got != 404 {
		t.Errorf("acme's user through globex's path: %d", got)
	}
	if got, _, _ := w.scim(w.globexSCI, "DELETE", "/scim/v2/globex/Users/"+ann, nil); got != 404 {
		t.Errorf("delete acme's user through globex's path: %d", got)
	}
	if st, _ := w.member(ann); st != "active" {
		t.Fatalf("acme's membership after globex's attempts: %q", st)
	}
	// userName collisions across organizations touch nobody else: globex
	// cannot take over acme's user by its email (domain not verified by globex)
	got, out, _ := w.scim(w.globexSCI, "POST", "/scim/v2/globex/Users", map[string]any{"userName": "ann@acme.example"})
	if got != 409 || out["scimType"] != "uniqueness" {
		t.Fatalf("globex provisioning acme's email: %d %v", got, out)
	}
	// the same userName with another email is another user
	shared := map[string]any{"userName": "shared", "emails": []any{map[string]any{"value": "shared@globex.example"}}}
	_, g1, _ := w.scim(w.globexSCI, "POST", "/scim/v2/globex/Users", shared)
	a1 := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "shared", "emails": []any{map[string]any{"value": "shared@acme.example"}}})
	if str(g1, "id") == "" || str(g1, "id") == str(a1, "id") {
		t.Fatalf("same userName in two orgs: %v / %v", g1, a1)
	}
	// a user who also belongs to globex is never changed through acme
	both := createUser(h, "dual@acme.example")
	putMember(h, testKey, "globex", both, "member")
	linked := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "dual@acme.example", "displayName": "Renamed By Acme"})
	if str(linked, "id") != both {
		t.Fatalf("verified-domain user not linked: %v", linked)
	}
	if u := h.must(200, "GET", "/v1/users/"+both, nil); u["name"] == "Renamed By Acme" {
		t.Fatal("acme's provisioning renamed a user who belongs to globex too")
	}
	w.must(204, "DELETE", "/scim/v2/acme/Users/"+both, nil)
	if got, _ := h.call("GET", "/v1/organizations/globex/members/"+both, nil); got != 200 {
		t.Fatalf("globex's membership after acme deleted its SCIM user: %d", got)
	}
	// globex cannot plant a user in acme's verified domain (acme's provisioning would
	// link it), neither at creation nor by changing an email later
	if got, out, _ := w.scim(w.globexSCI, "POST", "/scim/v2/globex/Users", map[string]any{"userName": "ceo@acme.example"}); got != 400 || out["scimType"] != "invalidValue" {
		t.Fatalf("globex planting an acme.example user: %d %v", got, out)
	}
	if got, out, _ := w.scim(w.globexSCI, "PATCH", "/scim/v2/globex/Users/"+str(g1, "id"), patchOps(op("replace", "emails", []any{map[string]any{"value": "ceo@acme.example", "primary": true}}))); got != 400 || out["scimType"] != "invalidValue" {
		t.Fatalf("globex moving its user into acme.example: %d %v", got, out)
	}
	// an unverified-domain user of nobody's org is not linked by acme either
	createUser(h, "stranger@elsewhere.example")
	if got, out, _ := w.scim(w.acmeSCIM, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "stranger@elsewhere.example"}); got != 409 || out["scimType"] != "uniqueness" {
		t.Fatalf("linking an unverified-domain user: %d %v", got, out)
	}
}

func TestSCIMTokens(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	admin := h.as(w.adminTok)
	list := admin.do(200, "GET", "/v1/organizations/acme/scim/tokens", nil)["tokens"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["token"] != nil || list[0].(map[string]any)["lastUsedAt"] != nil {
		t.Fatalf("tokens %v", list)
	}
	w.must(200, "GET", "/scim/v2/acme/ServiceProviderConfig", nil)
	tok := admin.do(200, "GET", "/v1/organizations/acme/scim/tokens", nil)["tokens"].([]any)[0].(map[string]any)
	if tok["lastUsedAt"] == nil || tok["createdBy"] != "user:"+w.admin {
		t.Fatalf("after use: %v", tok)
	}
	// no token, a bad one, a tampered one: 401
	for _, bad := range []string{"", "nonsense", w.acmeSCIM + "x", strings.Replace(w.acmeSCIM, ".", ".A", 1)} {
		if got, _, hdr := w.scim(bad, "GET", "/scim/v2/acme/Users", nil); got != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("token %q: %d", bad, got)
		}
	}
	// a SCIM token is no credential on /v1
	if got, _ := h.callAs(w.acmeSCIM, "GET", "/v1/organizations/acme", nil); got != 401 {
		t.Errorf("SCIM token on /v1: %d", got)
	}
	// a member who does not manage SCIM cannot mint or list; another org's admin sees nothing
	m := createUser(h, "plain@acme.example")
	putMember(h, testKey, "acme", m, "member")
	h.as(h.token(m, "")).fails(403, "", "", "POST", "/v1/organizations/acme/scim/tokens", nil)
	g := createUser(h, "boss@globex.example")
	putMember(h, testKey, "globex", g, "admin")
	h.as(h.token(g, "")).fails(404, "", "", "GET", "/v1/organizations/acme/scim/tokens", nil)
	// an impersonation mints no lasting authority: no SCIM token
	second := createUser(h, "second@acme.example")
	putMember(h, testKey, "acme", second, "admin")
	im := impersonate(admin, "", second, "acme", "*")
	h.as(impersonationToken(admin, im)).fails(403, "", "", "POST", "/v1/organizations/acme/scim/tokens", nil)
	// expiry is bounded; expired tokens stop
	admin.fails(400, "", "expiresAt", "POST", "/v1/organizations/acme/scim/tokens", map[string]any{"expiresAt": "2001-01-01T00:00:00Z"})
	short := admin.do(201, "POST", "/v1/organizations/acme/scim/tokens", map[string]any{"expiresAt": h.clock.Now().Add(3600e9).Format("2006-01-02T15:04:05Z07:00")})
	if got, _, _ := w.scim(str(short, "token"), "GET", "/scim/v2/acme/Users", nil); got != 200 {
		t.Fatalf("fresh token: %d", got)
	}
	h.clock.Advance(2 * 3600e9)
	if got, _, _ := w.scim(str(short, "token"), "GET", "/scim/v2/acme/Users", nil); got != 401 {
		t.Fatalf("expired token: %d", got)
	}
	// revoked tokens stop at once; revocation is audited
	id := str(list[0].(map[string]any), "id")
	admin = h.as(h.token(w.admin, "")) // the clock moved past the first access token
	admin.do(204, "DELETE", "/v1/organizations/acme/scim/tokens/"+id, nil)
	if got, _, _ := w.scim(w.acmeSCIM, "GET", "/scim/v2/acme/Users", nil); got != 401 {
		t.Fatalf("revoked token: %d", got)
	}
	h.as(h.token(g, "")).fails(404, "", "", "DELETE", "/v1/organizations/acme/scim/tokens/"+id, nil)
	for _, action := range []string{"scim_token.create", "scim_token.revoke"} {
		if ev := h.must(200, "GET", "/v1/organizations/acme/audit?action="+action, nil)["events"].([]any); len(ev) == 0 {
			t.Errorf("no %s event", action)
		}
	}
}

// TestSCIMTokenActsWithItsCreatorsAuthority: a token minted by a delegate
// that manages members and SCIM (not roles) provisions members but cannot
// make a mapping grant admin, and stops when its creator is suspended.
func TestSCIMTokenActsWithItsCreatorsAuthority(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	d := createUser(h, "delegate@acme.example")
	h.provider().do(201, "POST", "/v1/organizations/acme/delegations", map[string]any{"grantee": "user:" + d, "scopes": []string{"members", "scim"}})
	dTok := h.token(d, "")
	tok := str(h.as(dTok).do(201, "POST", "/v1/organizations/acme/scim/tokens", nil), "token")
	got, out, _ := w.scim(tok, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "eve@acme.example"})
	if got != 201 {
		t.Fatalf("delegate's token provisions: %d %v", got, out)
	}
	eve := str(out, "id")
	got, out, _ = w.scim(tok, "POST", "/scim/v2/acme/Groups", map[string]any{"displayName": "Admins"})
	if got != 201 {
		t.Fatalf("delegate's token creates a group: %d %v", got, out)
	}
	g := str(out, "id")
	// the delegate may not map a group to admin: it does not hold admin
	h.as(dTok).fails(403, "", "", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Admins", "roles": []string{"admin"}}}})
	if got := w.groupRoles(g); len(got) != 0 {
		t.Fatalf("roles after a refused mapping: %v", got)
	}
	// the organization's admin may; then the delegate's token cannot put
	// anyone into the group, which would grant admin through it
	h.as(w.adminTok).do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Admins", "roles": []string{"admin"}}}})
	if got, out, _ := w.scim(tok, "PATCH", "/scim/v2/acme/Groups/"+g, patchOps(op("add", "members", []any{map[string]any{"value": eve}}))); got != 403 {
		t.Fatalf("delegate's token granting admin through a group: %d %v", got, out)
	}
	h.expect(false, "document:d1", "edit", "user:"+eve)
	if got := w.groupMembers(g); len(got) != 0 {
		t.Fatalf("members after a refused PATCH: %v", got)
	}
	// the refusal is on acme's chain
	if ev := h.must(200, "GET", "/v1/organizations/acme/audit?action=scim.group.put.denied", nil)["events"].([]any); len(ev) == 0 {
		t.Error("no scim.group.put.denied event")
	}
}

func TestSCIMErrors(t *testing.T) {
	w := newSCIMWorld(t)
	ann := w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "ann@acme.example"})
	id := str(ann, "id")
	u := "/scim/v2/acme/Users/" + id
	cases := []struct {
		status         int
		scimType       string
		method, path   string
		body           any
		header, hvalue string
	}{
		{400, "invalidFilter", "GET", `/scim/v2/acme/Users?filter=userName+eq`, nil, "", ""},
		{400, "invalidFilter", "GET", `/scim/v2/acme/Users?filter=((`, nil, "", ""},
		{400, "invalidFilter", "GET", `/scim/v2/acme/Users?filter=active+gt+true`, nil, "", ""},
		{400, "invalidSyntax", "POST", "/scim/v2/acme/Users", `{"userName": `, "", ""},
		{400, "invalidSyntax", "POST", "/scim/v2/acme/Users", `[1,2]`, "", ""},
		{400, "invalidSyntax", "POST", "/scim/v2/acme/Users", `{"userName":"a@acme.example"} {}`, "", ""},
		{400, "invalidSyntax", "PATCH", u, map[string]any{"Operations": "nope"}, "", ""},
		{400, "invalidSyntax", "PATCH", u, patchOps(op("move", "userName", "x")), "", ""},
		{400, "invalidPath", "PATCH", u, patchOps(op("replace", "emails[type eq", "x")), "", ""},
		{400, "invalidPath", "PATCH", u, patchOps(op("replace", "urn:example:unknown:attr", "x")), "", ""},
		{400, "invalidValue", "POST", "/scim/v2/acme/Users", map[string]any{"userName": "b@acme.example", "active": 5}, "", ""},
		{400, "invalidValue", "POST", "/scim/v2/acme/Users", map[string]any{"userName": 7}, "", ""},
		{400, "invalidValue", "POST", "/scim/v2/acme/Users", map[string]any{"userName": "no-email"}, "", ""},
		{400, "invalidValue", "POST", "/scim/v2/acme/Users", map[string]any{}, "", ""},
		{400, "invalidValue", "PATCH", u, patchOps(op("replace", "active", "maybe")), "", ""},
		{400, "invalidValue", "PATCH", u, patchOps(op("replace", "userName", nil)), "", ""},
		{400, "invalidValue", "POST", "/scim/v2/acme/Groups", map[string]any{"displayName": "G", "members": []any{map[string]any{"display": "no value"}}}, "", ""},
		{400, "invalidValue", "GET", "/scim/v2/acme/Users?sortOrder=sideways", nil, "", ""},
		{400, "invalidValue", "GET", "/scim/v2/acme/Users?count=many", nil, "", ""},
		{409, "uniqueness", "POST", "/scim/v2/acme/Users", map[string]any{"userName": "ANN@acme.example"}, "", ""},
		{400, "mutability", "PATCH", u, patchOps(op("replace", "id", "usr_other")), "", ""},
		{400, "mutability", "PATCH", u, patchOps(op("replace", "meta", map[string]any{})), "", ""},
		{413, "tooMany", "POST", "/scim/v2/acme/Bulk", bulkOf(1001), "", ""},
		{400, "noTarget", "PATCH", u, patchOps(op("remove", "", nil)), "", ""},
		{412, "", "PUT", u, map[string]any{"userName": "ann@acme.example"}, "If-Match", `W/"7"`},
		{412, "", "PATCH", u, patchOps(op("replace", "displayName", "x")), "If-Match", `W/"7"`},
		{412, "", "DELETE", u, nil, "If-Match", `W/"7"`},
		{404, "", "GET", "/scim/v2/acme/Users/usr_unknown", nil, "", ""},
		{404, "", "PATCH", "/scim/v2/acme/Groups/grp_unknown", patchOps(op("add", "members", []any{})), "", ""},
		{404, "", "GET", "/scim/v2/acme/Nothing", nil, "", ""},
		{404, "", "GET", "/scim/v2/acme/Schemas/urn:nope", nil, "", ""},
		{415, "invalidSyntax", "POST", "/scim/v2/acme/Users", map[string]any{"userName": "c@acme.example"}, "Content-Type", "text/plain"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s %s %s", c.status, c.scimType, c.method, c.path), func(t *testing.T) {
			var hdr []string
			if c.header != "" {
				hdr = []string{c.header, c.hvalue}
			}
			w.fails(c.status, c.scimType, c.method, c.path, c.body, hdr...)
		})
	}
	// nothing changed: the user is as created
	if out := w.must(200, "GET", u, nil); out["meta"].(map[string]any)["version"] != `W/"1"` {
		t.Fatalf("a failed request changed the user: %v", out)
	}
	// the errors are counted in the sync status
	st := w.h.as(w.adminTok).do(200, "GET", "/v1/organizations/acme/scim/status", nil)
	if errs := st["recentErrors"].([]any); len(errs) < len(cases)-5 {
		t.Fatalf("recent errors %d, want at least %d", len(errs), len(cases)-5)
	}
}

func bulkOf(n int) map[string]any {
	ops := make([]any, n)
	for i := range ops {
		ops[i] = map[string]any{"method": "DELETE", "path": "/Users/usr_x"}
	}
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"}, "Operations": ops}
}

func TestSCIMQueriesAndETags(t *testing.T) {
	w := newSCIMWorld(t)
	var ids []string
	for _, n := range []string{"dora", "alice", "carol", "bert"} {
		ids = append(ids, str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": n + "@acme.example",
			"title": "t-" + n, "emails": []any{map[string]any{"type": "work", "value": n + "@acme.example"}}}), "id"))
	}
	names := func(out map[string]any) []string {
		var s []string
		for _, r := range out["Resources"].([]any) {
			s = append(s, str(r.(map[string]any), "userName"))
		}
		return s
	}
	out := w.must(200, "GET", "/scim/v2/acme/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2", nil)
	if got := names(out); !slices.Equal(got, []string{"carol@acme.example", "bert@acme.example"}) || out["totalResults"] != float64(4) {
		t.Fatalf("sorted page: %v %v", got, out)
	}
	out = w.must(200, "GET", `/scim/v2/acme/Users?filter=emails[type+eq+"work"+and+value+sw+"a"]+or+title+eq+"T-DORA"&sortBy=userName`, nil)
	if got := names(out); !slices.Equal(got, []string{"alice@acme.example", "dora@acme.example"}) {
		t.Fatalf("filtered: %v", got)
	}
	out = w.must(200, "GET", `/scim/v2/acme/Users?filter=not+(userName+sw+"a"+or+userName+sw+"c"+or+userName+sw+"d")`, nil)
	if got := names(out); !slices.Equal(got, []string{"bert@acme.example"}) {
		t.Fatalf("not: %v", got)
	}
	out = w.must(200, "GET", "/scim/v2/acme/Users/"+ids[0]+"?attributes=userName", nil)
	if _, has := out["title"]; has || out["userName"] == nil || out["id"] == nil || out["meta"] == nil {
		t.Fatalf("attributes: %v", out)
	}
	out = w.must(200, "GET", "/scim/v2/acme/Users/"+ids[0]+"?excludedAttributes=title,emails", nil)
	if _, has := out["title"]; has || out["userName"] == nil {
		t.Fatalf("excludedAttributes: %v", out)
	}
	out = w.must(200, "POST", "/scim/v2/acme/Users/.search", map[string]any{"filter": `userName eq "bert@acme.example"`, "attributes": []string{"userName"}})
	if got := names(out); !slices.Equal(got, []string{"bert@acme.example"}) {
		t.Fatalf(".search: %v", got)
	}
	// ETags: the current version passes, a stale one is 412
	_, cur, hdr := w.scim(w.acmeSCIM, "GET", "/scim/v2/acme/Users/"+ids[0], nil)
	etag := hdr.Get("ETag")
	if etag != cur["meta"].(map[string]any)["version"] {
		t.Fatalf("ETag %q, meta.version %v", etag, cur["meta"])
	}
	w.must(200, "PATCH", "/scim/v2/acme/Users/"+ids[0], patchOps(op("replace", "title", "boss")), "If-Match", etag)
	w.fails(412, "", "PATCH", "/scim/v2/acme/Users/"+ids[0], patchOps(op("replace", "title", "again")), "If-Match", etag)
	// discovery
	spc := w.must(200, "GET", "/scim/v2/acme/ServiceProviderConfig", nil)
	if spc["bulk"].(map[string]any)["maxOperations"] != float64(1000) || spc["etag"].(map[string]any)["supported"] != true {
		t.Fatalf("SPC %v", spc)
	}
	if rt := w.must(200, "GET", "/scim/v2/acme/ResourceTypes", nil); rt["totalResults"] != float64(2) {
		t.Fatalf("ResourceTypes %v", rt)
	}
	if sc := w.must(200, "GET", "/scim/v2/acme/Schemas/"+scimEnterprise, nil); sc["id"] != scimEnterprise {
		t.Fatalf("enterprise schema %v", sc)
	}
}

func TestSCIMBulk(t *testing.T) {
	w := newSCIMWorld(t)
	out := w.must(200, "POST", "/scim/v2/acme/Bulk", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"}, "failOnErrors": 1,
		"Operations": []any{
			map[string]any{"method": "POST", "path": "/Users", "bulkId": "u1", "data": map[string]any{"userName": "fay@acme.example"}},
			map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g1", "data": map[string]any{"displayName": "Ops", "members": []any{map[string]any{"value": "bulkId:u1"}}}},
			map[string]any{"method": "PATCH", "path": "/Users/bulkId:u1", "data": patchOps(op("replace", "active", false))},
			map[string]any{"method": "POST", "path": "/Users", "data": map[string]any{"userName": "fay@acme.example"}},
			map[string]any{"method": "POST", "path": "/Users", "data": map[string]any{"userName": "never@acme.example"}},
		}})
	res := out["Operations"].([]any)
	var st []string
	for _, r := range res {
		st = append(st, str(r.(map[string]any), "status"))
	}
	if !slices.Equal(st, []string{"201", "201", "200", "409"}) {
		t.Fatalf("bulk statuses %v (failOnErrors 1 stops after the first failure): %v", st, res)
	}
	gid := strings.TrimPrefix(str(res[1].(map[string]any), "location"), w.h.url+"/scim/v2/acme/Groups/")
	uid := strings.TrimPrefix(str(res[0].(map[string]any), "location"), w.h.url+"/scim/v2/acme/Users/")
	if got := w.groupMembers(gid); !slices.Equal(got, []string{uid}) {
		t.Fatalf("bulkId member: %v", got)
	}
	if stt, _ := w.member(uid); stt != "suspended" {
		t.Fatalf("bulk PATCH: %q", stt)
	}
	if out := w.must(200, "GET", `/scim/v2/acme/Users?filter=userName+eq+"never@acme.example"`, nil); out["totalResults"] != float64(0) {
		t.Fatalf("an operation after failOnErrors was reached ran: %v", out)
	}
}

// TestSCIMTokenFollowsItsCreator: the token's authority is its creator's now,
// not when it was minted: a demoted creator's token provisions nothing.
func TestSCIMTokenFollowsItsCreator(t *testing.T) {
	w := newSCIMWorld(t)
	w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "ann@acme.example"})
	putMember(w.h, testKey, "acme", w.admin, "member")
	w.fails(403, "", "POST", "/scim/v2/acme/Users", map[string]any{"userName": "bob@acme.example"})
	w.fails(403, "", "GET", "/scim/v2/acme/Users", nil)
	if out := w.h.must(200, "GET", "/v1/organizations/acme/members", nil); len(out["members"].([]any)) != 2 {
		t.Fatalf("members after the demoted creator's token wrote: %v", out)
	}
}

// TestSCIMTokenDiesWithItsKey: a SCIM token minted with a service account's
// API key provisions within that key's limit and stops when the key is
// revoked — a leaked key cannot leave provisioning credentials behind.
func TestSCIMTokenDiesWithItsKey(t *testing.T) {
	w := newSCIMWorld(t)
	h, p := w.h, w.h.provider()
	sa := str(p.do(201, "POST", "/v1/organizations/acme/service-accounts", map[string]any{"name": "idp-bot", "roles": []string{"admin"}}), "id")
	k := p.do(201, "POST", "/v1/organizations/acme/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"manage_scim", "manage_members"}})
	tok := str(h.as(str(k, "key")).do(201, "POST", "/v1/organizations/acme/scim/tokens", map[string]any{"name": "okta"}), "token")
	if got, _, _ := w.scim(tok, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "una@acme.example"}); got != 201 {
		t.Fatalf("provisioning with the key's token: %d", got)
	}
	p.do(204, "DELETE", "/v1/organizations/acme/service-accounts/"+sa+"/keys/"+str(k, "id"), nil)
	if got, _, _ := w.scim(tok, "GET", "/scim/v2/acme/Users", nil); got != 401 {
		t.Fatalf("the token after its key's revocation: %d, want 401", got)
	}
	// the admin's token is untouched
	w.must(200, "GET", "/scim/v2/acme/Users", nil)
}
