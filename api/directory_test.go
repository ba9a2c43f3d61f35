package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The directory tests drive a provider → reseller → customer → region tree
// over HTTP the way clients do: with the provider admin key, user access
// tokens minted by POST /v1/tokens, and service-account API keys.

// caller sends requests with one bearer credential: the provider key, a user
// access token or an API key ("" sends no Authorization header).
type caller struct {
	h   *harness
	key string
}

func (h *harness) as(key string) caller { return caller{h: h, key: key} }

// provider is the caller holding the provider admin key.
func (h *harness) provider() caller { return h.as(testKey) }

// do sends the request and fails the test unless the status is want.
func (c caller) do(want int, method, path string, body any) map[string]any {
	c.h.t.Helper()
	got, out := c.h.callAs(c.key, method, path, body)
	if got != want {
		c.h.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, out)
	}
	return out
}

// fails expects a problem document with status, and with code and field
// unless they are "".
func (c caller) fails(status int, code, field, method, path string, body any) map[string]any {
	c.h.t.Helper()
	out := c.do(status, method, path, body)
	if out["status"] != float64(status) {
		c.h.t.Errorf("%s %s: problem status = %v, want %d", method, path, out["status"], status)
	}
	if code != "" && out["code"] != code {
		c.h.t.Errorf("%s %s: code = %v, want %q (%v)", method, path, out["code"], code, out)
	}
	if field != "" && out["field"] != field {
		c.h.t.Errorf("%s %s: field = %v, want %q (%v)", method, path, out["field"], field, out)
	}
	return out
}

// raw sends a bodiless request and returns the response and its whole body.
func (c caller) raw(method, path string) (*http.Response, []byte) {
	c.h.t.Helper()
	req, err := http.NewRequest(method, c.h.url+path, nil)
	if err != nil {
		c.h.t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.h.t.Fatal(err)
	}
	checkContract(c.h.t, req, resp.StatusCode, resp.Header, body)
	return resp, body
}

// createOrg creates an organization as key and returns its id.
func createOrg(h *harness, key, name, slug, parent string) string {
	h.t.Helper()
	body := map[string]any{"name": name, "slug": slug}
	if parent != "" {
		body["parent"] = parent
	}
	out := h.as(key).do(201, "POST", "/v1/organizations", body)
	id := str(out, "id")
	if !strings.HasPrefix(id, "org_") || out["slug"] != slug || out["name"] != name || out["status"] != "active" {
		h.t.Fatalf("created organization %v, want id org_…, slug %q, name %q, status active", out, slug, name)
	}
	return id
}

// createUser creates a user with the provider key and returns its id.
func createUser(h *harness, email string) string {
	h.t.Helper()
	out := h.provider().do(201, "POST", "/v1/users", map[string]any{"email": email})
	id := str(out, "id")
	if !strings.HasPrefix(id, "usr_") || out["email"] != strings.ToLower(email) {
		h.t.Fatalf("created user %v, want id usr_… and email %q", out, strings.ToLower(email))
	}
	return id
}

// putMember sets a membership as key (201 or 200) and returns it.
func putMember(h *harness, key, org, user string, roles ...string) map[string]any {
	h.t.Helper()
	path := "/v1/organizations/" + org + "/members/" + user
	got, out := h.callAs(key, "PUT", path, map[string]any{"roles": roles})
	if got != 201 && got != 200 {
		h.t.Fatalf("PUT %s: status %d: %v", path, got, out)
	}
	if !reflect.DeepEqual(strs(out["roles"]), roles) {
		h.t.Fatalf("PUT %s: roles %v, want %v", path, out["roles"], roles)
	}
	return out
}

// token mints a user access token with the provider key; org may be "".
func (h *harness) token(user, org string) string {
	h.t.Helper()
	body := map[string]any{"subject": "user:" + user}
	if org != "" {
		body["organization"] = org
	}
	out := h.provider().do(201, "POST", "/v1/tokens", body)
	tok := str(out, "accessToken")
	if strings.Count(tok, ".") != 2 {
		h.t.Fatalf("POST /v1/tokens: accessToken %q is not a JWT", tok)
	}
	return tok
}

// expect asserts the answer of one check (made with the provider key).
func (h *harness) expect(want bool, resource, permission, subject string) {
	h.t.Helper()
	if got := h.check(resource, permission, subject) == "HAS_PERMISSION"; got != want {
		h.t.Errorf("check %s#%s@%s allowed = %v, want %v", resource, permission, subject, got, want)
	}
}

// canAccess asserts whether user holds access on org.
func (h *harness) canAccess(want bool, org, user string) {
	h.t.Helper()
	h.expect(want, "organization:"+org, "access", "user:"+user)
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// strs converts a decoded JSON array of strings; nil for anything else.
func strs(v any) []string {
	raw, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// items returns the objects of the array m[k].
func items(t testing.TB, m map[string]any, k string) []map[string]any {
	t.Helper()
	raw, ok := m[k].([]any)
	if !ok {
		t.Fatalf("%q is not an array in %v", k, m)
	}
	out := make([]map[string]any, 0, len(raw))
	for _, x := range raw {
		obj, ok := x.(map[string]any)
		if !ok {
			t.Fatalf("%q holds a non-object %v", k, x)
		}
		out = append(out, obj)
	}
	return out
}

// pluck collects field k of each object.
func pluck(list []map[string]any, k string) []string {
	out := []string{}
	for _, m := range list {
		out = append(out, str(m, k))
	}
	return out
}

func wantEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// wantTime asserts that v is an RFC 3339 time equal to want.
func wantTime(t testing.TB, what string, v any, want time.Time) {
	t.Helper()
	s, _ := v.(string)
	got, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !got.Equal(want) {
		t.Errorf("%s = %v, want %s", what, v, want.Format(time.RFC3339Nano))
	}
}

// tree is the organization tree most directory tests start from:
//
//	reseller (admin rita) ─┬─ customer (admin carla, member cole) ── region (member rene)
//	                       └─ sibling (member sid)
type tree struct {
	reseller, customer, region, sibling string // organization ids; the slugs are these names
	resellerAdmin, customerAdmin        string // users holding admin there
	customerMember, regionMember        string // users holding member there
	siblingMember                       string
	resellerToken, customerToken        string // the admins' access tokens, scoped to their organization
}

func newTree(h *harness) *tree {
	h.t.Helper()
	tr := &tree{}
	tr.reseller = createOrg(h, testKey, "Reseller", "reseller", "")
	tr.customer = createOrg(h, testKey, "Customer", "customer", tr.reseller)
	tr.region = createOrg(h, testKey, "Region", "region", tr.customer)
	tr.sibling = createOrg(h, testKey, "Sibling", "sibling", tr.reseller)
	tr.resellerAdmin = createUser(h, "rita@reseller.example")
	tr.customerAdmin = createUser(h, "carla@customer.example")
	tr.customerMember = createUser(h, "cole@customer.example")
	tr.regionMember = createUser(h, "rene@customer.example")
	tr.siblingMember = createUser(h, "sid@sibling.example")
	putMember(h, testKey, tr.reseller, tr.resellerAdmin, "admin")
	putMember(h, testKey, tr.customer, tr.customerAdmin, "admin")
	putMember(h, testKey, tr.customer, tr.customerMember, "member")
	putMember(h, testKey, tr.region, tr.regionMember, "member")
	putMember(h, testKey, tr.sibling, tr.siblingMember, "member")
	// the customer owns customer.example: its admins may add those users
	h.provider().do(201, "POST", "/v1/organizations/customer/domains", map[string]any{"domain": "customer.example"})
	h.provider().do(200, "POST", "/v1/organizations/customer/domains/customer.example/verify", map[string]any{"method": "manual", "reason": "test fixture"})
	tr.resellerToken = h.token(tr.resellerAdmin, tr.reseller)
	tr.customerToken = h.token(tr.customerAdmin, tr.customer)
	return tr
}

// orgIDs lists the ids of GET path's organizations.
func orgIDs(h *harness, c caller, path string) []string {
	h.t.Helper()
	return pluck(items(h.t, c.do(200, "GET", path, nil), "organizations"), "id")
}

func TestOrganizationsCreateGetList(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()

	reseller := createOrg(h, testKey, "Reseller One", "reseller", "")
	customer := createOrg(h, testKey, "Customer Co", "customer", "reseller") // parent by slug
	region := createOrg(h, testKey, "Customer EU", "region", customer)       // parent by id
	sibling := createOrg(h, testKey, "Other Customer", "sibling", reseller)

	// by id and by slug (slugs are case-insensitive in paths)
	byID := p.do(200, "GET", "/v1/organizations/"+region, nil)
	bySlug := p.do(200, "GET", "/v1/organizations/REGION", nil)
	wantEqual(t, "GET by slug", bySlug, byID)
	wantEqual(t, "region id", byID["id"], region)
	wantEqual(t, "region name", byID["name"], "Customer EU")
	wantEqual(t, "region parent", byID["parent"], customer)
	wantEqual(t, "region path", strs(byID["path"]), []string{reseller, customer, region})
	wantEqual(t, "region status", byID["status"], "active")
	wantEqual(t, "region domains", byID["domains"], []any{})
	if _, err := time.Parse(time.RFC3339, str(byID, "createdAt")); err != nil {
		t.Errorf("createdAt %v: %v", byID["createdAt"], err)
	}
	top := p.do(200, "GET", "/v1/organizations/reseller", nil)
	if parent, ok := top["parent"]; !ok || parent != nil {
		t.Errorf("top-level parent = %v (present %v), want null", parent, ok)
	}
	wantEqual(t, "reseller path", strs(top["path"]), []string{reseller})
	mid := p.do(200, "GET", "/v1/organizations/"+customer, nil)
	wantEqual(t, "customer parent", mid["parent"], reseller)
	wantEqual(t, "customer path", strs(mid["path"]), []string{reseller, customer})
	p.fails(404, "not_found", "", "GET", "/v1/organizations/no-such-org", nil)
	p.fails(404, "not_found", "", "GET", "/v1/organizations/org_nosuchorg", nil)

	// listing: ?parent= (by slug or id), ?q= (name or slug), combined
	wantEqual(t, "?parent=reseller", orgIDs(h, p, "/v1/organizations?parent=reseller"), []string{customer, sibling})
	wantEqual(t, "?parent=<customer id>", orgIDs(h, p, "/v1/organizations?parent="+customer), []string{region})
	wantEqual(t, "?parent=region", orgIDs(h, p, "/v1/organizations?parent=region"), []string{})
	wantEqual(t, "?q=eu", orgIDs(h, p, "/v1/organizations?q=eu"), []string{region})
	wantEqual(t, "?q=customer", orgIDs(h, p, "/v1/organizations?q=customer"), []string{customer, region, sibling})
	wantEqual(t, "?parent=reseller&q=other", orgIDs(h, p, "/v1/organizations?parent=reseller&q=other"), []string{sibling})
	listed := items(t, p.do(200, "GET", "/v1/organizations?q=eu", nil), "organizations")[0]
	wantEqual(t, "listed region", listed, byID)

	// paging: one per page, in slug order, until nextCursor is empty
	var slugs []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatalf("paging did not end: %v", slugs)
		}
		path := "/v1/organizations?pageSize=1"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		out := p.do(200, "GET", path, nil)
		orgs := items(t, out, "organizations")
		if len(orgs) != 1 {
			t.Fatalf("page %d holds %d organizations, want 1: %v", page, len(orgs), out)
		}
		slugs = append(slugs, str(orgs[0], "slug"))
		cursor = str(out, "nextCursor")
		if cursor == "" {
			break
		}
	}
	wantEqual(t, "paged slugs", slugs, []string{"customer", "region", "reseller", "sibling"})
	out := p.do(200, "GET", "/v1/organizations?parent=reseller&pageSize=1", nil)
	wantEqual(t, "first child page", pluck(items(t, out, "organizations"), "id"), []string{customer})
	out = p.do(200, "GET", "/v1/organizations?parent=reseller&pageSize=1&cursor="+url.QueryEscape(str(out, "nextCursor")), nil)
	wantEqual(t, "second child page", pluck(items(t, out, "organizations"), "id"), []string{sibling})
	wantEqual(t, "last page nextCursor", out["nextCursor"], "")
	p.fails(400, "invalid_argument", "pageSize", "GET", "/v1/organizations?pageSize=1001", nil)
	p.fails(400, "invalid_argument", "pageSize", "GET", "/v1/organizations?pageSize=many", nil)
	p.fails(400, "invalid_argument", "cursor", "GET", "/v1/organizations?cursor=%21%21", nil)

	// bad input names the field; nothing is created
	p.fails(400, "invalid_argument", "slug", "POST", "/v1/organizations", map[string]any{"name": "Bad", "slug": "bad_slug"})
	p.fails(400, "invalid_argument", "slug", "POST", "/v1/organizations", map[string]any{"name": "Bad", "slug": "-edge"})
	p.fails(400, "invalid_argument", "name", "POST", "/v1/organizations", map[string]any{"slug": "nameless"})
	p.fails(400, "invalid_argument", "name", "POST", "/v1/organizations", map[string]any{"name": "   ", "slug": "blank"})
	p.fails(409, "slug_taken", "", "POST", "/v1/organizations", map[string]any{"name": "Again", "slug": "customer"})
	p.fails(409, "slug_taken", "", "POST", "/v1/organizations", map[string]any{"name": "Again", "slug": "CUSTOMER"})
	p.fails(400, "invalid_argument", "parent", "POST", "/v1/organizations", map[string]any{"name": "Orphan", "slug": "orphan", "parent": "no-such-org"})
	p.fails(400, "invalid_argument", "parent", "POST", "/v1/organizations", map[string]any{"name": "Orphan", "slug": "orphan", "parent": "org_nosuchorg"})
	for _, slug := range []string{"nameless", "blank", "orphan"} {
		p.fails(404, "not_found", "", "GET", "/v1/organizations/"+slug, nil)
	}
	wantEqual(t, "all organizations", len(orgIDs(h, p, "/v1/organizations")), 4)

	// depth: region is level 3; levels 4..10 fit, level 11 breaks the rule
	parent := region
	for level := 4; level <= 10; level++ {
		parent = createOrg(h, testKey, fmt.Sprintf("Level %d", level), fmt.Sprintf("level-%d", level), parent)
	}
	deepest := p.do(200, "GET", "/v1/organizations/"+parent, nil)
	if path := strs(deepest["path"]); len(path) != 10 || path[0] != reseller || path[9] != parent {
		t.Errorf("level-10 path = %v, want 10 ids from %s to %s", path, reseller, parent)
	}
	p.fails(422, "max_depth", "", "POST", "/v1/organizations", map[string]any{"name": "Level 11", "slug": "level-11", "parent": parent})
	p.fails(404, "not_found", "", "GET", "/v1/organizations/level-11", nil)
}

func TestUsers(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()

	u := p.do(201, "POST", "/v1/users", map[string]any{"email": "Ann.Smith@Example.COM", "name": "Ann Smith", "externalId": "hr-42"})
	id := str(u, "id")
	if !strings.HasPrefix(id, "usr_") {
		t.Fatalf("user id %q", id)
	}
	wantEqual(t, "email", u["email"], "ann.smith@example.com")
	wantEqual(t, "name", u["name"], "Ann Smith")
	wantEqual(t, "externalId", u["externalId"], "hr-42")
	wantEqual(t, "status", u["status"], "active")

	p.fails(409, "email_taken", "", "POST", "/v1/users", map[string]any{"email": "ann.smith@example.com"})
	p.fails(409, "email_taken", "", "POST", "/v1/users", map[string]any{"email": "ANN.SMITH@EXAMPLE.COM", "name": "Other Ann"})
	for _, bad := range []string{"not-an-email", "ann@localhost", "Ann <ann@example.com>", ""} {
		p.fails(400, "invalid_argument", "email", "POST", "/v1/users", map[string]any{"email": bad})
	}
	p.fails(400, "invalid_argument", "email", "POST", "/v1/users", map[string]any{"name": "No Email"})

	// the name defaults to the local part
	bob := p.do(201, "POST", "/v1/users", map[string]any{"email": "bob@example.com"})
	wantEqual(t, "default name", bob["name"], "bob")

	found := items(t, p.do(200, "GET", "/v1/users?email="+url.QueryEscape("ANN.Smith@example.com"), nil), "users")
	wantEqual(t, "found by email", pluck(found, "id"), []string{id})
	wantEqual(t, "found user", found[0], u)
	wantEqual(t, "unknown email", p.do(200, "GET", "/v1/users?email=nobody%40example.com", nil)["users"], []any{})
	p.fails(400, "invalid_argument", "email", "GET", "/v1/users", nil)

	wantEqual(t, "GET by id", p.do(200, "GET", "/v1/users/"+id, nil), u)
	p.fails(404, "not_found", "", "GET", "/v1/users/usr_nobody", nil)

	// only provider admins create users; a user sees itself, not others
	tok := h.token(id, "")
	h.as(tok).fails(403, "forbidden", "", "POST", "/v1/users", map[string]any{"email": "eve@example.com"})
	h.as(tok).do(200, "GET", "/v1/users/"+id, nil)
	h.as(tok).fails(404, "not_found", "", "GET", "/v1/users/"+str(bob, "id"), nil)
	wantEqual(t, "hidden user by email", h.as(tok).do(200, "GET", "/v1/users?email=bob%40example.com", nil)["users"], []any{})
	h.as("").fails(401, "unauthenticated", "", "GET", "/v1/users/"+id, nil)
}

func TestMemberships(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	u := createUser(h, "mia@customer.example")
	member := "/v1/organizations/customer/members/" + u

	h.canAccess(false, tr.customer, u)
	m := p.do(201, "PUT", member, map[string]any{"roles": []string{"member"}})
	wantEqual(t, "user", m["user"], u)
	wantEqual(t, "organization", m["organization"], tr.customer)
	wantEqual(t, "roles", strs(m["roles"]), []string{"member"})
	wantEqual(t, "status", m["status"], "active")
	wantEqual(t, "authenticatedVia", m["authenticatedVia"], "api")
	joined := str(m, "joinedAt")
	if _, err := time.Parse(time.RFC3339, joined); err != nil {
		t.Errorf("joinedAt %q: %v", joined, err)
	}
	// the graph follows at once: member gives access here only
	h.canAccess(true, tr.customer, u)
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+u)
	h.canAccess(false, tr.region, u)
	h.canAccess(false, tr.reseller, u)

	m = p.do(200, "PUT", member, map[string]any{"roles": []string{"admin"}})
	wantEqual(t, "roles after update", strs(m["roles"]), []string{"admin"})
	wantEqual(t, "joinedAt after update", m["joinedAt"], joined)
	h.expect(true, "organization:"+tr.customer, "manage", "user:"+u)
	h.expect(true, "organization:"+tr.region, "manage", "user:"+u) // administration inherits down
	h.canAccess(false, tr.reseller, u)                             // not up

	p.do(201, "PUT", "/v1/organizations/"+tr.region+"/members/"+u, map[string]any{"roles": []string{"member"}})
	p.do(201, "PUT", "/v1/organizations/sibling/members/"+u, map[string]any{"roles": []string{"member"}, "status": "invited"})
	h.canAccess(false, tr.sibling, u) // an invited membership grants nothing

	got := p.do(200, "GET", member, nil)
	wantEqual(t, "GET membership roles", strs(got["roles"]), []string{"admin"})
	list := items(t, p.do(200, "GET", "/v1/organizations/customer/members", nil), "members")
	want := []string{tr.customerAdmin, tr.customerMember, u}
	slices.Sort(want)
	wantEqual(t, "customer members", pluck(list, "user"), want)
	for _, x := range list {
		if x["user"] == u && !reflect.DeepEqual(strs(x["roles"]), []string{"admin"}) {
			t.Errorf("listed membership %v, want roles [admin]", x)
		}
	}
	// paging members
	var paged []string
	cursor := ""
	for range 5 {
		path := "/v1/organizations/customer/members?pageSize=1"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		out := p.do(200, "GET", path, nil)
		paged = append(paged, pluck(items(t, out, "members"), "user")...)
		if cursor = str(out, "nextCursor"); cursor == "" {
			break
		}
	}
	wantEqual(t, "paged members", paged, want)

	// every membership of the user, each with its own roles and status
	ms := items(t, p.do(200, "GET", "/v1/users/"+u+"/organizations", nil), "memberships")
	byOrg := map[string]string{}
	for _, x := range ms {
		byOrg[str(x, "organization")] = strings.Join(strs(x["roles"]), ",") + "/" + str(x, "status")
	}
	wantEqual(t, "user's organizations", byOrg, map[string]string{
		tr.customer: "admin/active", tr.region: "member/active", tr.sibling: "member/invited",
	})

	// demotion and removal: the very next check denies (no cache lag)
	p.do(200, "PUT", member, map[string]any{"roles": []string{"member"}})
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+u)
	h.canAccess(true, tr.customer, u)
	h.canAccess(true, tr.region, u)
	p.do(204, "DELETE", "/v1/organizations/"+tr.region+"/members/"+u, nil)
	h.canAccess(false, tr.region, u)
	h.canAccess(true, tr.customer, u)
	p.fails(404, "not_found", "", "DELETE", "/v1/organizations/"+tr.region+"/members/"+u, nil)
	p.fails(404, "not_found", "", "GET", "/v1/organizations/"+tr.region+"/members/"+u, nil)
	m = p.do(200, "PUT", member, map[string]any{"status": "suspended"})
	wantEqual(t, "suspended membership", []any{m["status"], strs(m["roles"])}, []any{"suspended", []string{"member"}})
	h.canAccess(false, tr.customer, u)
	p.do(200, "PUT", member, map[string]any{"status": "active"})
	h.canAccess(true, tr.customer, u)
	p.do(204, "DELETE", member, nil)
	h.canAccess(false, tr.customer, u)
	p.do(200, "GET", "/v1/users/"+u, nil) // the user remains

	// bad input
	p.fails(400, "invalid_argument", "roles[1]", "PUT", member, map[string]any{"roles": []string{"member", "no-such-role"}})
	p.fails(400, "invalid_argument", "status", "PUT", member, map[string]any{"status": "gone"})
	p.fails(404, "not_found", "", "GET", member, nil) // the failed PUTs created nothing
	p.fails(404, "not_found", "", "PUT", "/v1/organizations/customer/members/usr_nobody", map[string]any{"roles": []string{"member"}})
	p.fails(404, "not_found", "", "PUT", "/v1/organizations/no-such-org/members/"+u, map[string]any{"roles": []string{"member"}})

	// a plain member cannot manage members
	cole := h.as(h.token(tr.customerMember, tr.customer))
	cole.fails(403, "forbidden", "", "GET", "/v1/organizations/customer/members", nil)
	cole.fails(403, "forbidden", "", "PUT", member, map[string]any{"roles": []string{"member"}})
}

// jwtPart decodes segment i (0 header, 1 claims) of a compact JWT.
func jwtPart(t testing.TB, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTokens(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	now := h.clock.Now()

	out := p.do(201, "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": "customer"})
	tok := str(out, "accessToken")
	wantEqual(t, "tokenType", out["tokenType"], "Bearer")
	wantEqual(t, "subject", out["subject"], "user:"+tr.customerMember)
	wantEqual(t, "organization", out["organization"], tr.customer)
	wantTime(t, "expiresAt", out["expiresAt"], now.Add(15*time.Minute))
	header, claims := jwtPart(t, tok, 0), jwtPart(t, tok, 1)
	wantEqual(t, "alg", header["alg"], "ES256")
	wantEqual(t, "sub", claims["sub"], tr.customerMember)
	wantEqual(t, "org", claims["org"], tr.customer)

	// the signing key is published
	status, jwks := h.callAs("", "GET", "/.well-known/jwks.json", nil)
	if status != 200 {
		t.Fatalf("jwks: status %d", status)
	}
	if kids := pluck(items(t, jwks, "keys"), "kid"); !slices.Contains(kids, str(header, "kid")) {
		t.Errorf("jwks kids %v lack the token's kid %v", kids, header["kid"])
	}

	// the token authenticates its user
	member := h.as(tok)
	member.do(200, "GET", "/v1/organizations/customer", nil)
	member.do(200, "GET", "/v1/users/"+tr.customerMember, nil)

	// only provider admins mint tokens
	member.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": "customer"})
	h.as(tr.customerToken).fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember})
	h.as(tr.resellerToken).fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.resellerAdmin})

	// not a member of the organization
	p.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.siblingMember, "organization": "customer"})
	p.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": tr.region})
	// an administrator of the parent may act in the child
	h.token(tr.resellerAdmin, tr.customer)

	// ttl, subject and organization are checked
	out = p.do(201, "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "ttl": "5m"})
	wantTime(t, "expiresAt with ttl 5m", out["expiresAt"], now.Add(5*time.Minute))
	if _, ok := out["organization"]; ok {
		t.Errorf("a token without organization reports organization %v", out["organization"])
	}
	out = p.do(201, "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "ttl": 120})
	wantTime(t, "expiresAt with ttl 120", out["expiresAt"], now.Add(2*time.Minute))
	p.fails(400, "invalid_argument", "ttl", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": "customer", "ttl": "2h"})
	p.fails(400, "invalid_argument", "ttl", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "ttl": -1})
	p.fails(400, "invalid_argument", "subject", "POST", "/v1/tokens", map[string]any{"subject": tr.customerMember})
	p.fails(400, "invalid_argument", "subject", "POST", "/v1/tokens", map[string]any{"subject": "user:usr_nobody"})
	p.fails(400, "invalid_argument", "organization", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": "no-such-org"})

	// a refused token was never issued: the log records the issued ones only
	events := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?action=token.issue", nil), "events")
	issued := 0
	for _, ev := range events {
		if ev["target"] == "user:"+tr.customerMember {
			issued++
		}
	}
	wantEqual(t, "token.issue events for cole in customer", issued, 1)

	// forged, garbled and expired tokens are refused
	h.as(tok[:len(tok)-4]+"AAAA").fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer", nil)
	h.as("a.b.c").fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer", nil)
	h.clock.Advance(16 * time.Minute)
	member.fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer", nil)
}

func TestCustomerAdminScope(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	x := createUser(h, "xavier@customer.example")
	p.do(201, "PUT", "/v1/organizations/sibling/members/"+x, map[string]any{"roles": []string{"member"}})

	// its organization and the sub-organization below it
	list := items(t, ca.do(200, "GET", "/v1/organizations/customer/members", nil), "members")
	if users := pluck(list, "user"); !slices.Contains(users, tr.customerMember) || !slices.Contains(users, tr.customerAdmin) {
		t.Errorf("customer members %v", users)
	}
	ca.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	ca.do(201, "PUT", "/v1/organizations/"+tr.region+"/members/"+x, map[string]any{"roles": []string{"member"}})
	ca.do(200, "PUT", "/v1/organizations/region/members/"+x, map[string]any{"roles": []string{"admin"}})
	regionMembers := pluck(items(t, ca.do(200, "GET", "/v1/organizations/region/members", nil), "members"), "user")
	if !slices.Contains(regionMembers, x) || !slices.Contains(regionMembers, tr.regionMember) {
		t.Errorf("region members %v", regionMembers)
	}
	h.expect(true, "organization:"+tr.region, "manage", "user:"+x)
	ca.do(200, "GET", "/v1/organizations/region", nil)

	// the parent and the sibling do not exist for it
	for _, ref := range []string{"reseller", tr.reseller, "sibling", tr.sibling} {
		ca.fails(404, "not_found", "", "GET", "/v1/organizations/"+ref, nil)
		ca.fails(404, "not_found", "", "GET", "/v1/organizations/"+ref+"/members", nil)
		ca.fails(404, "not_found", "", "PUT", "/v1/organizations/"+ref+"/members/"+x, map[string]any{"roles": []string{"member"}})
		ca.fails(404, "not_found", "", "DELETE", "/v1/organizations/"+ref+"/members/"+tr.siblingMember, nil)
	}
	p.fails(404, "not_found", "", "GET", "/v1/organizations/reseller/members/"+x, nil)
	wantEqual(t, "organizations it lists", orgIDs(h, ca, "/v1/organizations"), []string{tr.customer, tr.region})
	wantEqual(t, "children of a hidden parent", orgIDs(h, ca, "/v1/organizations?parent=reseller"), []string{})
	ca.fails(404, "not_found", "", "GET", "/v1/users/"+tr.siblingMember, nil)
	wantEqual(t, "hidden user by email", ca.do(200, "GET", "/v1/users?email=sid%40sibling.example", nil)["users"], []any{})
	ms := items(t, ca.do(200, "GET", "/v1/users/"+x+"/organizations", nil), "memberships")
	wantEqual(t, "x's memberships it sees", sortedStrings(pluck(ms, "organization")...), sortedStrings(tr.customer, tr.region))

	// sub-organizations: under its own organization only
	lab := ca.do(201, "POST", "/v1/organizations", map[string]any{"name": "Lab", "slug": "customer-lab", "parent": "customer"})
	wantEqual(t, "lab parent", lab["parent"], tr.customer)
	wantEqual(t, "lab path", strs(lab["path"]), []string{tr.reseller, tr.customer, str(lab, "id")})
	ca.fails(400, "invalid_argument", "parent", "POST", "/v1/organizations", map[string]any{"name": "Side", "slug": "side", "parent": "reseller"})
	ca.fails(403, "forbidden", "", "POST", "/v1/organizations", map[string]any{"name": "Top", "slug": "top"})
	ca.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"name": "Customer Renamed"})

	// suspension is decided above: not by the customer's own admin…
	ca.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"status": "suspended"})
	ca.fails(403, "forbidden", "", "DELETE", "/v1/organizations/customer?cascade=true", nil)
	got := p.do(200, "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "customer after refused suspension", []any{got["status"], got["name"]}, []any{"active", "Customer Renamed"})
	h.canAccess(true, tr.customer, tr.customerMember)
	// …but by the reseller's
	ra := h.as(tr.resellerToken)
	wantEqual(t, "status", ra.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"status": "suspended"})["status"], "suspended")
	h.canAccess(false, tr.customer, tr.customerMember)
	wantEqual(t, "status", ra.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"status": "active"})["status"], "active")
	h.canAccess(true, tr.customer, tr.customerMember)
	// and the customer admin decides for the region below it
	ca.do(200, "PATCH", "/v1/organizations/region", map[string]any{"status": "suspended"})
	h.canAccess(false, tr.region, tr.regionMember)
	h.canAccess(true, tr.customer, tr.customerMember)
	ca.do(200, "PATCH", "/v1/organizations/region", map[string]any{"status": "active"})
	h.canAccess(true, tr.region, tr.regionMember)
	// the provider may suspend a top-level organization; no one else may
	ra.fails(403, "forbidden", "", "PATCH", "/v1/organizations/reseller", map[string]any{"status": "suspended"})
	ca.do(204, "DELETE", "/v1/organizations/"+tr.region+"/members/"+x, nil)
}

func TestRoleEscalation(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	customer := "organization:" + tr.customer

	role := p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "member-manager", "name": "Member manager", "permissions": []string{"manage_members"}})
	wantEqual(t, "role", []any{role["key"], role["name"], strs(role["permissions"]), role["organization"], role["builtin"]},
		[]any{"member-manager", "Member manager", []string{"manage_members"}, tr.customer, false})
	mm := createUser(h, "max@customer.example")
	putMember(h, testKey, tr.customer, mm, "member-manager")
	h.expect(true, customer, "manage_members", "user:"+mm)
	h.expect(true, customer, "access", "user:"+mm)
	h.expect(false, customer, "manage", "user:"+mm)
	h.expect(false, customer, "manage_roles", "user:"+mm)
	m := h.as(h.token(mm, tr.customer))

	// it adds members with roles whose permissions it holds…
	y := createUser(h, "yara@customer.example")
	m.do(201, "PUT", "/v1/organizations/customer/members/"+y, map[string]any{"roles": []string{"member"}})
	// …and no more
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+y, map[string]any{"roles": []string{"admin"}})
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+y, map[string]any{"roles": []string{"member", "member-manager", "owner"}})
	wantEqual(t, "y's roles after refused grants", strs(p.do(200, "GET", "/v1/organizations/customer/members/"+y, nil)["roles"]), []string{"member"})
	h.expect(false, customer, "manage", "user:"+y)
	z := createUser(h, "zed@customer.example")
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+z, map[string]any{"roles": []string{"admin"}})
	p.fails(404, "not_found", "", "GET", "/v1/organizations/customer/members/"+z, nil)
	m.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "boss@customer.example", "roles": []string{"admin"}})
	// refused escalations are audited, with the permission that was missing
	denied := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?action=member.put.denied", nil), "events")
	if len(denied) != 3 {
		t.Fatalf("want 3 audited refusals of member.put, got %d: %v", len(denied), denied)
	}
	for _, ev := range denied {
		d, _ := ev["details"].(map[string]any)
		if ev["actor"] != "user:"+mm || d["permission"] == nil || d["reason"] != "escalation" {
			t.Errorf("refusal event = %v", ev)
		}
	}
	if got := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?action=invitation.create.denied", nil), "events"); len(got) != 1 {
		t.Errorf("the refused invitation is not audited: %v", got)
	}
	if v := p.do(200, "GET", "/v1/organizations/customer/audit/verify", nil); v["valid"] != true {
		t.Errorf("chain with refusal events does not verify: %v", v)
	}
	// manage_members inherited down the tree lets it add members in the region too
	w := createUser(h, "wes@customer.example")
	m.do(201, "PUT", "/v1/organizations/region/members/"+w, map[string]any{"roles": []string{"member"}})
	h.canAccess(true, tr.region, w)
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/region/members/"+w, map[string]any{"roles": []string{"admin"}})
	// nor take away, suspend or reinstate what it could not grant
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+tr.customerAdmin, map[string]any{"roles": []string{"member"}})
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+tr.customerAdmin, map[string]any{"status": "suspended"})
	m.fails(403, "forbidden", "", "DELETE", "/v1/organizations/customer/members/"+tr.customerAdmin, nil)
	h.expect(true, customer, "manage", "user:"+tr.customerAdmin)
	p.do(200, "PUT", "/v1/organizations/customer/members/"+tr.customerAdmin, map[string]any{"status": "suspended"})
	m.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+tr.customerAdmin, map[string]any{"status": "active"})
	h.expect(false, customer, "manage", "user:"+tr.customerAdmin)
	p.do(200, "PUT", "/v1/organizations/customer/members/"+tr.customerAdmin, map[string]any{"status": "active"})
	m.do(200, "PUT", "/v1/organizations/customer/members/"+y, map[string]any{"status": "suspended"})
	h.canAccess(false, tr.customer, y)

	// creating roles needs manage_roles, and only with permissions the caller holds
	m.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "helper", "permissions": []string{"manage_members"}})
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "role-manager", "permissions": []string{"manage_roles"}})
	rm := createUser(h, "rosa@customer.example")
	putMember(h, testKey, tr.customer, rm, "role-manager")
	r := h.as(h.token(rm, tr.customer))
	r.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "auditor-local", "permissions": []string{"view_audit"}})
	r.fails(403, "forbidden", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "super", "permissions": []string{"manage_roles", "manage"}})
	r.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "role-manager-2", "permissions": []string{"manage_roles"}})
	r.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer/roles/role-manager-2", map[string]any{"permissions": []string{"manage_roles", "manage_billing"}})
	r.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer/roles/member-manager", map[string]any{"permissions": []string{"manage_roles"}})
	r.fails(403, "forbidden", "", "DELETE", "/v1/organizations/customer/roles/member-manager", nil)
	r.fails(404, "not_found", "", "POST", "/v1/organizations/reseller/roles", map[string]any{"key": "up", "permissions": []string{"manage_roles"}})
	wantEqual(t, "role-manager-2", strs(p.do(200, "GET", "/v1/organizations/customer/roles/role-manager-2", nil)["permissions"]), []string{"manage_roles"})

	// role input is validated, fields named
	p.fails(400, "invalid_argument", "permissions[0]", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "bad", "permissions": []string{"fly"}})
	p.fails(400, "invalid_argument", "permissions[1]", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "bad", "permissions": []string{"access", "fly"}})
	p.fails(400, "invalid_argument", "permissions", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "bad", "permissions": []string{}})
	p.fails(400, "invalid_argument", "permissions", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "bad"})
	p.fails(400, "invalid_argument", "key", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "Bad Key", "permissions": []string{"access"}})
	p.fails(400, "invalid_argument", "key", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "admin", "permissions": []string{"access"}})
	p.fails(409, "role_exists", "", "POST", "/v1/organizations/customer/roles", map[string]any{"key": "member-manager", "permissions": []string{"access"}})
	p.fails(404, "not_found", "", "GET", "/v1/organizations/customer/roles/bad", nil)

	// roles defined on the reseller are usable below it
	p.do(201, "POST", "/v1/organizations/reseller/roles", map[string]any{"key": "auditor", "name": "Auditor", "permissions": []string{"view_audit"}})
	aud := createUser(h, "audrey@customer.example")
	putMember(h, testKey, "customer", aud, "auditor")
	h.expect(true, customer, "view_audit", "user:"+aud)
	h.expect(true, "organization:"+tr.region, "view_audit", "user:"+aud)
	h.expect(false, "organization:"+tr.reseller, "view_audit", "user:"+aud)
	h.expect(false, customer, "manage_members", "user:"+aud)
	inherited := p.do(200, "GET", "/v1/organizations/customer/roles/auditor", nil)
	wantEqual(t, "inherited role", []any{inherited["organization"], inherited["inherited"]}, []any{tr.reseller, true})
	roleKeys := pluck(items(t, p.do(200, "GET", "/v1/organizations/customer/roles", nil), "roles"), "key")
	for _, k := range []string{"owner", "admin", "member", "member-manager", "role-manager", "role-manager-2", "auditor"} {
		if !slices.Contains(roleKeys, k) {
			t.Errorf("customer roles %v lack %s", roleKeys, k)
		}
	}
	h.as(h.token(aud, tr.customer)).do(200, "GET", "/v1/organizations/customer/audit", nil)
	// a customer's role is not usable beside or above it
	p.fails(400, "invalid_argument", "roles[0]", "PUT", "/v1/organizations/sibling/members/"+aud, map[string]any{"roles": []string{"member-manager"}})
	p.fails(400, "invalid_argument", "roles[0]", "PUT", "/v1/organizations/reseller/members/"+aud, map[string]any{"roles": []string{"member-manager"}})

	// a role in use anywhere below cannot be deleted
	p.fails(409, "role_in_use", "", "DELETE", "/v1/organizations/reseller/roles/auditor", nil)
	p.fails(404, "not_found", "", "DELETE", "/v1/organizations/customer/roles/auditor", nil) // defined on the reseller
	putMember(h, testKey, tr.customer, aud, "member")
	h.expect(false, customer, "view_audit", "user:"+aud)
	p.do(204, "DELETE", "/v1/organizations/reseller/roles/auditor", nil)
	p.fails(404, "not_found", "", "GET", "/v1/organizations/reseller/roles/auditor", nil)
	p.fails(400, "invalid_argument", "roles[0]", "PUT", "/v1/organizations/customer/members/"+aud, map[string]any{"roles": []string{"auditor"}})
}

func TestGroups(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	region := "organization:" + tr.region
	groups := "/v1/organizations/region/groups/"
	h.write(rel("document:plan", "org", region))

	staff := p.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "Staff", "roles": []string{"member"}})
	wantEqual(t, "staff group", []any{staff["organization"], staff["name"], strs(staff["roles"])}, []any{tr.region, "Staff", []string{"member"}})
	admins := str(p.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "Admins", "roles": []string{"admin"}}), "id")
	oncall := p.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "On call"})
	wantEqual(t, "roles of a group made without", oncall["roles"], []any{})
	staffID, oncallID := str(staff, "id"), str(oncall, "id")
	if !strings.HasPrefix(staffID, "grp_") {
		t.Fatalf("group id %q", staffID)
	}
	p.fails(400, "invalid_argument", "roles", "POST", "/v1/organizations/region/groups", map[string]any{"name": "Owners", "roles": []string{"owner"}})
	p.fails(400, "invalid_argument", "roles[0]", "POST", "/v1/organizations/region/groups", map[string]any{"name": "Ghosts", "roles": []string{"ghost"}})
	p.fails(400, "invalid_argument", "name", "POST", "/v1/organizations/region/groups", map[string]any{"roles": []string{"member"}})

	u := createUser(h, "uma@customer.example")
	putMember(h, testKey, tr.region, u, "member")
	v := createUser(h, "vic@customer.example")
	p.do(201, "PUT", "/v1/organizations/region/members/"+v, map[string]any{"status": "invited"})
	h.canAccess(false, tr.region, v)
	outsider := createUser(h, "otto@customer.example")

	// users must be members of the organization
	p.fails(422, "not_a_member", "", "PUT", groups+staffID+"/members/"+outsider, nil)
	wantEqual(t, "user in group", p.do(200, "PUT", groups+staffID+"/members/"+u, nil)["type"], "user")
	// nesting: oncall ⊂ admins, so oncall's users hold admin of the region
	wantEqual(t, "nested group", p.do(200, "PUT", groups+admins+"/members/group:"+oncallID, nil)["type"], "group")
	h.expect(false, region, "manage", "user:"+u)
	p.do(200, "PUT", groups+oncallID+"/members/user:"+u, nil)
	h.expect(true, region, "manage", "user:"+u)
	h.expect(true, "document:plan", "edit", "user:"+u) // through the app schema too
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+u)
	// three levels: staff ⊂ oncall ⊂ admins
	p.do(200, "PUT", groups+oncallID+"/members/group:"+staffID, nil)
	// cycles are refused
	p.fails(422, "cycle", "", "PUT", groups+oncallID+"/members/group:"+admins, nil)
	p.fails(422, "cycle", "", "PUT", groups+staffID+"/members/group:"+admins, nil)
	p.fails(422, "cycle", "", "PUT", groups+admins+"/members/group:"+admins, nil)
	// another organization's group is not nestable nor visible here
	other := str(p.do(201, "POST", "/v1/organizations/customer/groups", map[string]any{"name": "Customer staff"}), "id")
	p.fails(422, "unknown_group", "", "PUT", groups+oncallID+"/members/group:"+other, nil)
	p.fails(404, "not_found", "", "GET", groups+other, nil)
	p.fails(404, "not_found", "", "PUT", groups+other+"/members/"+u, nil)

	// an invited member's group grants nothing until the membership is active
	p.do(200, "PUT", groups+staffID+"/members/"+v, nil)
	h.canAccess(false, tr.region, v)
	h.expect(false, region, "manage", "user:"+v)
	p.do(200, "PUT", "/v1/organizations/region/members/"+v, map[string]any{"status": "active"})
	h.expect(true, region, "manage", "user:"+v) // staff ⊂ oncall ⊂ admins
	wantEqual(t, "v's own roles", strs(p.do(200, "GET", "/v1/organizations/region/members/"+v, nil)["roles"]), []string{"member"})

	members := items(t, p.do(200, "GET", groups+oncallID+"/members", nil), "members")
	got := []string{}
	for _, m := range members {
		got = append(got, str(m, "type")+":"+str(m, "id"))
	}
	wantEqual(t, "oncall members", got, []string{"group:" + staffID, "user:" + u})

	// the customer admin manages the region's groups
	ca := h.as(tr.customerToken)
	wantEqual(t, "region groups", len(items(t, ca.do(200, "GET", "/v1/organizations/region/groups", nil), "groups")), 3)
	ca.do(200, "GET", groups+staffID, nil)
	h.as(h.token(tr.regionMember, tr.region)).fails(403, "forbidden", "", "GET", "/v1/organizations/region/groups", nil)

	// unnesting takes the grant away at once; membership access stays
	ca.do(204, "DELETE", groups+admins+"/members/group:"+oncallID, nil)
	h.expect(false, region, "manage", "user:"+u)
	h.expect(false, region, "manage", "user:"+v)
	h.canAccess(true, tr.region, u)
	p.do(200, "PUT", groups+admins+"/members/group:"+oncallID, nil)
	h.expect(true, region, "manage", "user:"+v)
	// suspending the membership suspends the group grants; removing it leaves the groups
	p.do(200, "PUT", "/v1/organizations/region/members/"+v, map[string]any{"status": "suspended"})
	h.expect(false, region, "manage", "user:"+v)
	p.do(204, "DELETE", "/v1/organizations/region/members/"+u, nil)
	h.expect(false, region, "manage", "user:"+u)
	h.canAccess(false, tr.region, u)
	got = got[:0]
	for _, m := range items(t, p.do(200, "GET", groups+oncallID+"/members", nil), "members") {
		got = append(got, str(m, "type")+":"+str(m, "id"))
	}
	wantEqual(t, "oncall members after u left the region", got, []string{"group:" + staffID})
	// deleting a group revokes what it granted
	p.do(200, "PUT", "/v1/organizations/region/members/"+v, map[string]any{"status": "active"})
	h.expect(true, region, "manage", "user:"+v)
	p.do(204, "DELETE", groups+admins, nil)
	h.expect(false, region, "manage", "user:"+v)
	p.fails(404, "not_found", "", "GET", groups+admins, nil)
}

func TestInvitations(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	anon := h.as("")
	accept := func(token string) string { return "/v1/invitations/" + token + "/accept" }

	inv := ca.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "New.Hire@Customer.Example", "roles": []string{"member"}})
	token := str(inv, "token")
	if !strings.HasPrefix(token, "inv_") || len(token) < 40 {
		t.Fatalf("invitation token %q", token)
	}
	wantEqual(t, "invitation", []any{inv["email"], strs(inv["roles"]), inv["status"], inv["organization"], inv["invitedBy"]},
		[]any{"new.hire@customer.example", []string{"member"}, "pending", tr.customer, "user:" + tr.customerAdmin})
	wantTime(t, "expiresAt", inv["expiresAt"], h.clock.Now().Add(7*24*time.Hour))
	listed := items(t, ca.do(200, "GET", "/v1/organizations/customer/invitations", nil), "invitations")
	if len(listed) != 1 || listed[0]["id"] != inv["id"] || listed[0]["status"] != "pending" {
		t.Fatalf("invitations %v", listed)
	}
	if _, ok := listed[0]["token"]; ok {
		t.Errorf("a listed invitation shows its token: %v", listed[0])
	}

	// the token is the credential: accepting creates the user and the membership
	anon.fails(404, "not_found", "", "POST", accept("inv_nosuchtoken"), nil)
	m := anon.do(200, "POST", accept(token), map[string]any{"name": "New Hire"})
	user := str(m, "user")
	wantEqual(t, "membership", []any{m["organization"], strs(m["roles"]), m["status"], m["authenticatedVia"]},
		[]any{tr.customer, []string{"member"}, "active", "invitation"})
	found := items(t, p.do(200, "GET", "/v1/users?email=new.hire%40customer.example", nil), "users")
	wantEqual(t, "invited user", pluck(found, "id"), []string{user})
	wantEqual(t, "invited user's name", found[0]["name"], "New Hire")
	h.canAccess(true, tr.customer, user)
	anon.fails(409, "invitation_used", "", "POST", accept(token), nil)
	listed = items(t, ca.do(200, "GET", "/v1/organizations/customer/invitations", nil), "invitations")
	wantEqual(t, "accepted invitation", []any{listed[0]["status"], listed[0]["acceptedBy"]}, []any{"accepted", "user:" + user})

	// a signed-in user accepts only its own invitations
	inv2 := ca.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "sam@customer.example", "roles": []string{"admin"}})
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "forbidden", "", "POST", accept(str(inv2, "token")), nil)
	h.as("not-a-token").fails(401, "unauthenticated", "", "POST", accept(str(inv2, "token")), nil)
	sam := createUser(h, "sam@customer.example")
	m = h.as(h.token(sam, "")).do(200, "POST", accept(str(inv2, "token")), nil)
	wantEqual(t, "sam's membership", []any{m["user"], strs(m["roles"])}, []any{sam, []string{"admin"}})
	h.expect(true, "organization:"+tr.customer, "manage", "user:"+sam)
	p.fails(409, "email_taken", "", "POST", "/v1/users", map[string]any{"email": "sam@customer.example"}) // no second user

	// an invitation does not lift a suspension (which would bring back every role)
	p.do(200, "PUT", "/v1/organizations/customer/members/"+sam, map[string]any{"status": "suspended"})
	inv5 := ca.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "sam@customer.example"})
	anon.fails(409, "membership_suspended", "", "POST", accept(str(inv5, "token")), nil)
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+sam)
	wantEqual(t, "sam's membership after the refused accept", p.do(200, "GET", "/v1/organizations/customer/members/"+sam, nil)["status"], "suspended")

	// who may invite, and with what
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "forbidden", "", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "x@customer.example"})
	ca.fails(404, "not_found", "", "POST", "/v1/organizations/reseller/invitations", map[string]any{"email": "x@customer.example"})
	ca.fails(404, "not_found", "", "GET", "/v1/organizations/sibling/invitations", nil)
	ca.fails(400, "invalid_argument", "email", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "nope"})
	ca.fails(400, "invalid_argument", "roles[0]", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "x@customer.example", "roles": []string{"ghost"}})
	ca.fails(400, "invalid_argument", "ttlSeconds", "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "x@customer.example", "ttlSeconds": 10})

	// revoked and expired invitations are conflicts
	inv3 := ca.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "rev@customer.example"})
	ca.do(204, "DELETE", "/v1/organizations/customer/invitations/"+str(inv3, "id"), nil)
	anon.fails(409, "invitation_revoked", "", "POST", accept(str(inv3, "token")), nil)
	inv4 := ca.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "late@customer.example", "ttlSeconds": 60})
	h.clock.Advance(61 * time.Second)
	anon.fails(409, "invitation_expired", "", "POST", accept(str(inv4, "token")), nil)
	var statuses []string
	for _, x := range items(t, ca.do(200, "GET", "/v1/organizations/customer/invitations", nil), "invitations") {
		statuses = append(statuses, str(x, "email")+" "+str(x, "status"))
	}
	wantEqual(t, "invitation statuses", sortedStrings(statuses...), []string{
		"late@customer.example expired", "new.hire@customer.example accepted", "rev@customer.example revoked",
		"sam@customer.example accepted", "sam@customer.example pending",
	})
	wantEqual(t, "users of refused invitations", p.do(200, "GET", "/v1/users?email=late%40customer.example", nil)["users"], []any{})
}

func TestSuspendAndReactivate(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ra := h.as(tr.resellerToken)
	ca := h.as(tr.customerToken)
	memberToken := h.token(tr.customerMember, tr.customer)
	cole := h.as(memberToken)
	h.write(rel("document:memo", "org", "organization:"+tr.customer), rel("document:plan", "org", "organization:"+tr.region))

	h.canAccess(true, tr.customer, tr.customerMember)
	h.canAccess(true, tr.region, tr.regionMember)
	h.expect(true, "document:plan", "view", "user:"+tr.regionMember)

	p.fails(400, "invalid_argument", "status", "PATCH", "/v1/organizations/customer", map[string]any{"status": "deleted"})
	ca.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"status": "suspended"})
	wantEqual(t, "status", ra.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"status": "suspended"})["status"], "suspended")
	wantEqual(t, "GET status", p.do(200, "GET", "/v1/organizations/region", nil)["status"], "active") // its own status
	// the whole subtree is off: members, admins, app permissions built on access
	h.canAccess(false, tr.customer, tr.customerMember)
	h.canAccess(false, tr.region, tr.regionMember)
	h.canAccess(false, tr.customer, tr.customerAdmin)
	h.expect(false, "organization:"+tr.customer, "manage", "user:"+tr.customerAdmin)
	h.expect(false, "document:plan", "view", "user:"+tr.regionMember)
	h.expect(false, "document:memo", "view", "user:"+tr.customerMember)
	h.canAccess(true, tr.sibling, tr.siblingMember) // the sibling is untouched
	// no new tokens for its members; existing tokens can do nothing there
	p.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.customerMember, "organization": "customer"})
	p.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.regionMember, "organization": "region"})
	cole.fails(404, "not_found", "", "GET", "/v1/organizations/customer", nil)
	ca.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+tr.siblingMember, map[string]any{"roles": []string{"member"}})
	// only from above does it come back
	ca.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"status": "active"})
	wantEqual(t, "status", ra.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"status": "active"})["status"], "active")
	h.canAccess(true, tr.customer, tr.customerMember)
	h.canAccess(true, tr.region, tr.regionMember)
	h.expect(true, "document:plan", "view", "user:"+tr.regionMember)
	h.token(tr.customerMember, tr.customer)
	cole.do(200, "GET", "/v1/organizations/customer", nil)

	// the provider suspends too, here only the region
	p.do(200, "PATCH", "/v1/organizations/region", map[string]any{"status": "suspended"})
	h.canAccess(false, tr.region, tr.regionMember)
	h.canAccess(true, tr.customer, tr.customerMember)
	p.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + tr.regionMember, "organization": "region"})
	p.do(200, "PATCH", "/v1/organizations/region", map[string]any{"status": "active"})
	h.canAccess(true, tr.region, tr.regionMember)

	// suspend and reactivate are audited on the organization's chain
	actions := pluck(items(t, p.do(200, "GET", "/v1/organizations/customer/audit?actor=user:"+tr.resellerAdmin, nil), "events"), "action")
	wantEqual(t, "reseller admin's actions on customer", actions, []string{"organization.suspend", "organization.reactivate"})
}

// impactSet renders impact entries as subject/organization/permission strings.
func impactSet(t testing.TB, impact map[string]any, side string) []string {
	t.Helper()
	out := []string{}
	for _, c := range items(t, impact, side) {
		out = append(out, str(c, "subject")+" "+str(c, "organization")+" "+str(c, "permission"))
	}
	slices.Sort(out)
	return out
}

func TestMoveWithPreview(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	other := createOrg(h, testKey, "Reseller Two", "reseller-two", "")
	otherAdmin := createUser(h, "olga@reseller-two.example")
	putMember(h, testKey, other, otherAdmin, "admin")
	customer, region := "organization:"+tr.customer, "organization:"+tr.region

	// the preview names who gains and loses what, across the moved subtree
	var catalogue []string
	for _, r := range items(t, p.do(200, "GET", "/v1/organizations/customer/roles", nil), "roles") {
		if r["key"] == "admin" {
			catalogue = strs(r["permissions"])
		}
	}
	if !slices.Contains(catalogue, "manage") || !slices.Contains(catalogue, "manage_members") {
		t.Fatalf("admin permissions %v", catalogue)
	}
	var lost, gained []string
	for _, org := range []string{tr.customer, tr.region} {
		for _, perm := range catalogue {
			lost = append(lost, "user:"+tr.resellerAdmin+" "+org+" "+perm)
			gained = append(gained, "user:"+otherAdmin+" "+org+" "+perm)
		}
	}
	slices.Sort(lost)
	slices.Sort(gained)

	preview := p.do(200, "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two", "dryRun": true})
	wantEqual(t, "preview", []any{preview["organization"], preview["from"], preview["to"], preview["dryRun"], preview["applied"]},
		[]any{tr.customer, tr.reseller, other, true, false})
	impact, _ := preview["impact"].(map[string]any)
	wantEqual(t, "lost", impactSet(t, impact, "lost"), lost)
	wantEqual(t, "gained", impactSet(t, impact, "gained"), gained)
	totals, _ := impact["totals"].(map[string]any)
	if n, _ := totals["relationships"].(float64); n < 1 {
		t.Errorf("totals.relationships = %v, want the count of relationships the preview loaded", totals["relationships"])
	}
	delete(totals, "relationships")
	wantEqual(t, "totals", totals, map[string]any{"gained": float64(len(gained)), "lost": float64(len(lost)), "organizations": float64(2)})
	// nothing changed
	wantEqual(t, "parent after preview", p.do(200, "GET", "/v1/organizations/customer", nil)["parent"], tr.reseller)
	h.expect(true, customer, "manage", "user:"+tr.resellerAdmin)
	h.expect(false, customer, "manage", "user:"+otherAdmin)
	h.expect(true, region, "manage_members", "user:"+tr.resellerAdmin)

	// rules: not under itself or its subtree; the parent must exist; decided above
	p.fails(422, "cycle", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "region", "dryRun": true})
	p.fails(422, "cycle", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "customer"})
	p.fails(400, "invalid_argument", "parent", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "no-such-org"})
	h.as(tr.customerToken).fails(403, "forbidden", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two", "dryRun": true})
	h.as(tr.resellerToken).fails(400, "invalid_argument", "parent", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two"})
	wantEqual(t, "parent after refused moves", p.do(200, "GET", "/v1/organizations/customer", nil)["parent"], tr.reseller)

	// applied
	moved := p.do(200, "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two"})
	wantEqual(t, "move", []any{moved["dryRun"], moved["applied"], moved["to"]}, []any{false, true, other})
	wantEqual(t, "applied lost", impactSet(t, moved["impact"].(map[string]any), "lost"), lost)
	got := p.do(200, "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "customer after move", []any{got["parent"], strs(got["path"])}, []any{other, []string{other, tr.customer}})
	wantEqual(t, "region path after move", strs(p.do(200, "GET", "/v1/organizations/region", nil)["path"]), []string{other, tr.customer, tr.region})
	wantEqual(t, "children of reseller", orgIDs(h, p, "/v1/organizations?parent=reseller"), []string{tr.sibling})
	h.expect(false, customer, "manage", "user:"+tr.resellerAdmin)
	h.expect(false, region, "manage_members", "user:"+tr.resellerAdmin)
	h.expect(true, customer, "manage", "user:"+otherAdmin)
	h.expect(true, region, "manage_members", "user:"+otherAdmin)
	h.canAccess(true, tr.customer, tr.customerMember) // members are unaffected
	h.expect(true, customer, "manage", "user:"+tr.customerAdmin)
	h.as(tr.resellerToken).fails(404, "not_found", "", "GET", "/v1/organizations/customer", nil)
	moves := items(t, p.do(200, "GET", "/v1/organizations/reseller/audit?action=organization.move", nil), "events")
	wantEqual(t, "move audited on the old parent", pluck(moves, "target"), []string{customer})
}

func TestDeleteCascade(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "Staff", "roles": []string{"member"}})
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "helper", "permissions": []string{"manage_members"}})
	both := createUser(h, "bo@customer.example")
	putMember(h, testKey, tr.customer, both, "helper")
	putMember(h, testKey, tr.sibling, both, "member")
	h.write(rel("document:plan", "org", "organization:"+tr.region))
	h.expect(true, "document:plan", "view", "user:"+tr.regionMember)

	p.fails(409, "has_children", "", "DELETE", "/v1/organizations/customer", nil)
	p.fails(400, "invalid_argument", "cascade", "DELETE", "/v1/organizations/customer?cascade=maybe", nil)
	h.as(tr.customerToken).fails(403, "forbidden", "", "DELETE", "/v1/organizations/customer?cascade=true", nil)
	p.do(200, "GET", "/v1/organizations/customer", nil)
	h.canAccess(true, tr.region, tr.regionMember)

	h.as(tr.resellerToken).do(204, "DELETE", "/v1/organizations/customer?cascade=true", nil)
	for _, ref := range []string{"customer", tr.customer, "region", tr.region} {
		p.fails(404, "not_found", "", "GET", "/v1/organizations/"+ref, nil)
	}
	p.fails(404, "not_found", "", "GET", "/v1/organizations/customer/members", nil)
	h.canAccess(false, tr.customer, tr.customerMember)
	h.canAccess(false, tr.customer, tr.customerAdmin)
	h.canAccess(false, tr.region, tr.regionMember)
	h.expect(false, "organization:"+tr.customer, "manage_members", "user:"+both)
	h.expect(false, "organization:"+tr.region, "manage", "user:"+tr.resellerAdmin)
	h.expect(false, "document:plan", "view", "user:"+tr.regionMember)
	h.expect(false, "document:plan", "edit", "user:"+tr.resellerAdmin)
	h.canAccess(true, tr.sibling, both)
	// the users remain, with their other memberships
	for _, u := range []string{tr.customerMember, tr.customerAdmin, tr.regionMember, both} {
		p.do(200, "GET", "/v1/users/"+u, nil)
	}
	wantEqual(t, "bo's organizations", pluck(items(t, p.do(200, "GET", "/v1/users/"+both+"/organizations", nil), "memberships"), "organization"), []string{tr.sibling})
	wantEqual(t, "cole's organizations", p.do(200, "GET", "/v1/users/"+tr.customerMember+"/organizations", nil)["memberships"], []any{})
	wantEqual(t, "reseller's children", orgIDs(h, p, "/v1/organizations?parent=reseller"), []string{tr.sibling})
	// the slug is free again, and the new organization inherits nothing
	again := createOrg(h, testKey, "Customer Again", "customer", tr.reseller)
	h.canAccess(false, again, tr.customerMember)
	p.fails(400, "invalid_argument", "roles[0]", "PUT", "/v1/organizations/customer/members/"+both, map[string]any{"roles": []string{"helper"}})

	// a leaf needs no cascade
	p.do(204, "DELETE", "/v1/organizations/sibling", nil)
	h.canAccess(false, tr.sibling, both)
	p.fails(404, "not_found", "", "DELETE", "/v1/organizations/sibling", nil)
	deletes := items(t, p.do(200, "GET", "/v1/organizations/reseller/audit?action=organization.delete_child", nil), "events")
	wantEqual(t, "deletions audited on the parent", pluck(deletes, "target"), []string{"organization:" + tr.customer, "organization:" + tr.sibling})
}

func TestDomains(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	// fakeDNS outlives the harness: names unique to this run
	domain := strings.TrimPrefix(tr.customer, "org_") + ".example.com"
	second := "mail." + domain
	p.do(204, "DELETE", "/v1/organizations/customer/domains/customer.example", nil) // newTree's

	claim := ca.do(201, "POST", "/v1/organizations/customer/domains", map[string]any{"domain": strings.ToUpper(domain) + "."})
	wantEqual(t, "claim", []any{claim["domain"], claim["verified"], claim["organization"]}, []any{domain, false, tr.customer})
	txt, _ := claim["txtRecord"].(map[string]any)
	if txt["name"] != "_trellis-challenge."+domain || txt["type"] != "TXT" || !strings.HasPrefix(str(txt, "value"), "trellis-domain-verification=") {
		t.Fatalf("txtRecord %v", txt)
	}
	again := ca.do(200, "POST", "/v1/organizations/customer/domains", map[string]any{"domain": domain})
	wantEqual(t, "claimed again", again["txtRecord"], claim["txtRecord"])
	ca.fails(400, "invalid_argument", "domain", "POST", "/v1/organizations/customer/domains", map[string]any{"domain": "not a domain"})
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "forbidden", "", "POST", "/v1/organizations/customer/domains", map[string]any{"domain": second})
	ca.fails(404, "not_found", "", "POST", "/v1/organizations/reseller/domains", map[string]any{"domain": second})

	// dns: only once the record is published
	verify := "/v1/organizations/customer/domains/" + domain + "/verify"
	ca.fails(422, "domain_unverified", "", "POST", verify, map[string]any{"method": "dns"})
	fakeDNS.publish(str(txt, "name"), "some-other-record")
	ca.fails(422, "domain_unverified", "", "POST", verify, nil)
	fakeDNS.publish(str(txt, "name"), str(txt, "value"))
	ok := ca.do(200, "POST", verify, nil) // dns is the default
	wantEqual(t, "verified", []any{ok["verified"], ok["method"]}, []any{true, "dns"})
	org := p.do(200, "GET", "/v1/organizations/customer", nil)
	doms := items(t, org, "domains")
	wantEqual(t, "org domains", []any{len(doms), doms[0]["domain"], doms[0]["verified"]}, []any{1, domain, true})
	ca.fails(400, "invalid_argument", "method", "POST", verify, map[string]any{"method": "carrier-pigeon"})

	// manual: provider admins only, with a reason, audited
	ca.do(201, "POST", "/v1/organizations/customer/domains", map[string]any{"domain": second})
	verify2 := "/v1/organizations/customer/domains/" + second + "/verify"
	ca.fails(403, "forbidden", "", "POST", verify2, map[string]any{"method": "manual", "reason": "trust me"})
	p.fails(400, "invalid_argument", "reason", "POST", verify2, map[string]any{"method": "manual"})
	ok = p.do(200, "POST", verify2, map[string]any{"method": "manual", "reason": "support ticket 123"})
	wantEqual(t, "manually verified", []any{ok["verified"], ok["method"]}, []any{true, "manual"})
	events := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?action=domain.verify", nil), "events")
	events = slices.DeleteFunc(events, func(ev map[string]any) bool { return ev["target"] == "domain:customer.example" })
	if len(events) != 2 {
		t.Fatalf("domain.verify events %v", events)
	}
	manual := events[1]
	wantEqual(t, "manual verification event", []any{manual["actor"], manual["target"], manual["details"]},
		[]any{"provider:admin-key", "domain:" + second, map[string]any{"method": "manual", "reason": "support ticket 123"}})
	wantEqual(t, "dns verification actor", events[0]["actor"], "user:"+tr.customerAdmin)

	// a domain verified by one organization cannot be verified by another
	p.do(201, "POST", "/v1/organizations/sibling/domains", map[string]any{"domain": domain})
	p.fails(409, "domain_taken", "", "POST", "/v1/organizations/sibling/domains/"+domain+"/verify", map[string]any{"method": "manual", "reason": "mistake"})
	p.fails(409, "domain_taken", "", "POST", "/v1/organizations/sibling/domains/"+domain+"/verify", nil)
	p.fails(404, "not_found", "", "POST", "/v1/organizations/sibling/domains/unclaimed.example.com/verify", nil)
	sib := items(t, p.do(200, "GET", "/v1/organizations/sibling", nil), "domains")
	wantEqual(t, "sibling's claim stays unverified", []any{sib[0]["domain"], sib[0]["verified"]}, []any{domain, false})
	// once released, the other organization may verify it
	ca.do(204, "DELETE", "/v1/organizations/customer/domains/"+domain, nil)
	p.do(200, "POST", "/v1/organizations/sibling/domains/"+domain+"/verify", map[string]any{"method": "manual", "reason": "moved"})
}
