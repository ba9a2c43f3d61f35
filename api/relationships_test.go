package api_test

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// relUpdates builds a write body of one operation over the given relationships.
func relUpdates(op string, rels ...map[string]any) map[string]any {
	updates := make([]map[string]any, len(rels))
	for i, r := range rels {
		updates[i] = map[string]any{"operation": op, "relationship": r}
	}
	return map[string]any{"updates": updates}
}

// relRead returns every relationship matching filter (one page of up to 1000) as
// "resource#relation@subject" strings, sorted.
func relRead(h *harness, filter map[string]any) []string {
	h.t.Helper()
	out := h.must(200, "POST", "/v1/relationships/read", map[string]any{"filter": filter, "pageSize": 1000})
	if nc, ok := out["nextCursor"]; !ok || nc != nil {
		h.t.Fatalf("read %v: nextCursor = %v (present %v), want null", filter, nc, ok)
	}
	return relStrings(h.t, out["relationships"])
}

func relStrings(t testing.TB, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("relationships is %T (%v), want an array", v, v)
	}
	got := make([]string, 0, len(list))
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			t.Fatalf("relationship is %T, want an object", e)
		}
		got = append(got, fmt.Sprintf("%v#%v@%v", m["resource"], m["relation"], m["subject"]))
	}
	sort.Strings(got)
	return got
}

func sortedStrings(s ...string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// mustProblem calls and expects a problem document with the given status, code and field.
func mustProblem(h *harness, status int, code, field, method, path string, body any) map[string]any {
	h.t.Helper()
	got, out := h.call(method, path, body)
	if got != status {
		h.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, status, out)
	}
	if out["status"] != float64(status) {
		h.t.Errorf("%s %s: problem status = %v, want %d", method, path, out["status"], status)
	}
	if code != "" && out["code"] != code {
		h.t.Errorf("%s %s: code = %v, want %q (%v)", method, path, out["code"], code, out)
	}
	if field != "" && out["field"] != field {
		h.t.Errorf("%s %s: field = %v, want %q (%v)", method, path, out["field"], field, out)
	}
	return out
}

func TestRelationshipWriteTouchCreateDelete(t *testing.T) {
	h := newHarness(t, docApp)
	alice := rel("document:1", "viewer", "user:alice")

	// touch is idempotent: twice, one stored relationship
	for i := 0; i < 2; i++ {
		out := h.must(200, "POST", "/v1/relationships/write", relUpdates("touch", alice))
		if tok, _ := out["writtenAt"].(string); tok == "" {
			t.Fatalf("touch #%d: no writtenAt: %v", i+1, out)
		}
	}
	if got, want := relRead(h, map[string]any{"resourceType": "document", "resourceId": "1"}), []string{"document:1#viewer@user:alice"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after two touches: %v, want %v", got, want)
	}
	if p := h.check("document:1", "view", "user:alice"); p != "HAS_PERMISSION" {
		t.Fatalf("alice view after touch = %s, want HAS_PERMISSION", p)
	}

	// create of an existing relationship conflicts and changes nothing
	mustProblem(h, 409, "conflict", "", "POST", "/v1/relationships/write", relUpdates("create", alice))
	// create is atomic with the rest of the batch: the new owner is not written either
	mustProblem(h, 409, "conflict", "", "POST", "/v1/relationships/write", map[string]any{"updates": []map[string]any{
		{"operation": "create", "relationship": rel("document:1", "owner", "user:bob")},
		{"operation": "create", "relationship": alice},
	}})
	if p := h.check("document:1", "edit", "user:bob"); p != "NO_PERMISSION" {
		t.Fatalf("bob edit after a refused batch = %s, want NO_PERMISSION", p)
	}

	// create of a new relationship succeeds
	h.must(200, "POST", "/v1/relationships/write", relUpdates("create", rel("document:1", "owner", "user:bob")))
	if p := h.check("document:1", "edit", "user:bob"); p != "HAS_PERMISSION" {
		t.Fatalf("bob edit after create = %s, want HAS_PERMISSION", p)
	}

	// delete: the next check denies
	h.must(200, "POST", "/v1/relationships/write", relUpdates("delete", alice))
	if p := h.check("document:1", "view", "user:alice"); p != "NO_PERMISSION" {
		t.Fatalf("alice view after delete = %s, want NO_PERMISSION", p)
	}
	if got, want := relRead(h, map[string]any{"resourceType": "document", "resourceId": "1"}), []string{"document:1#owner@user:bob"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete: %v, want %v", got, want)
	}
	// deleting what is not there is not an error
	h.must(200, "POST", "/v1/relationships/write", relUpdates("delete", alice))

	// an unknown operation names its field
	mustProblem(h, 400, "invalid_argument", "updates[0].operation", "POST", "/v1/relationships/write", relUpdates("upsert", alice))
}

func TestRelationshipCaveatRoundTrip(t *testing.T) {
	h := newHarness(t, docApp)
	r := rel("document:c", "viewer", "user:carol")
	r["caveat"] = map[string]any{"name": "ip_allowed", "context": map[string]any{"cidr": "10.0.0.0/8"}}
	h.write(r)

	out := h.must(200, "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document", "resourceId": "c"}})
	list, _ := out["relationships"].([]any)
	if len(list) != 1 {
		t.Fatalf("read: %d relationships, want 1: %v", len(list), out)
	}
	want := map[string]any{
		"resource": "document:c", "relation": "viewer", "subject": "user:carol",
		"caveat": map[string]any{"name": "ip_allowed", "context": map[string]any{"cidr": "10.0.0.0/8"}},
	}
	if !reflect.DeepEqual(list[0], want) {
		t.Fatalf("read back %v, want %v", list[0], want)
	}

	// the caveat is live: the missing ip makes it conditional, the ip decides
	check := func(ctx map[string]any) map[string]any {
		body := map[string]any{"resource": "document:c", "permission": "view", "subject": "user:carol"}
		if ctx != nil {
			body["context"] = ctx
		}
		return h.must(200, "POST", "/v1/check", body)
	}
	if got := check(nil); got["permissionship"] != "CONDITIONAL" || got["allowed"] != false {
		t.Errorf("check without ip: %v, want CONDITIONAL and allowed false", got)
	}
	if got := check(map[string]any{"ip": "10.1.2.3"}); got["permissionship"] != "HAS_PERMISSION" || got["allowed"] != true {
		t.Errorf("check from 10.1.2.3: %v, want HAS_PERMISSION", got)
	}
	if got := check(map[string]any{"ip": "192.168.1.1"}); got["permissionship"] != "NO_PERMISSION" || got["allowed"] != false {
		t.Errorf("check from 192.168.1.1: %v, want NO_PERMISSION", got)
	}
}

func TestRelationshipExpiresAt(t *testing.T) {
	h := newHarness(t, docApp)
	future := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	past := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)

	erin := rel("document:e", "viewer", "user:erin")
	erin["expiresAt"] = future.Format(time.RFC3339)
	h.write(erin)

	out := h.must(200, "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document", "resourceId": "e", "subject": "user:erin"}})
	list, _ := out["relationships"].([]any)
	if len(list) != 1 {
		t.Fatalf("read: %d relationships, want 1: %v", len(list), out)
	}
	got, _ := list[0].(map[string]any)
	s, _ := got["expiresAt"].(string)
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("expiresAt %q is not RFC 3339: %v (%v)", s, err, got)
	}
	if !at.Equal(future) {
		t.Fatalf("expiresAt read back %s, want %s", at, future)
	}
	if got["resource"] != "document:e" || got["relation"] != "viewer" || got["subject"] != "user:erin" {
		t.Fatalf("read back %v", got)
	}
	if _, ok := got["caveat"]; ok {
		t.Errorf("expiring relationship reads back with a caveat: %v", got)
	}
	if p := h.check("document:e", "view", "user:erin"); p != "HAS_PERMISSION" {
		t.Fatalf("erin view before expiry = %s, want HAS_PERMISSION", p)
	}

	// an already expired relationship does not grant
	frank := rel("document:e", "viewer", "user:frank")
	frank["expiresAt"] = past.Format(time.RFC3339)
	h.write(frank)
	if p := h.check("document:e", "view", "user:frank"); p != "NO_PERMISSION" {
		t.Fatalf("frank view with an expired grant = %s, want NO_PERMISSION", p)
	}
}

func TestRelationshipExpiresAtNotRFC3339(t *testing.T) {
	h := newHarness(t, docApp)
	bad := rel("document:e", "viewer", "user:gina")
	bad["expiresAt"] = "tomorrow"
	code, p := h.call("POST", "/v1/relationships/write", relUpdates("touch", bad))
	if code != 400 || p["code"] != "invalid_argument" {
		t.Fatalf("expiresAt \"tomorrow\": status %d, want 400 invalid_argument: %v", code, p)
	}
	if p["field"] != "updates[0].relationship.expiresAt" {
		t.Errorf("expiresAt \"tomorrow\": field %v, want updates[0].relationship.expiresAt: %v", p["field"], p)
	}
	if got := relRead(h, map[string]any{"resourceType": "document"}); len(got) != 0 {
		t.Fatalf("refused write stored %v", got)
	}
}

func TestRelationshipReadFilters(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(
		rel("document:r1", "owner", "user:alice"),
		rel("document:r1", "viewer", "user:bob"),
		rel("document:r1", "viewer", "group:eng#member"),
		rel("document:r2", "viewer", "user:bob"),
		rel("document:r2", "viewer", "user:carol"),
		rel("document:r2", "banned", "user:alice"),
		rel("group:eng", "member", "user:dave"),
	)
	cases := []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"type", map[string]any{"resourceType": "document"}, []string{
			"document:r1#owner@user:alice", "document:r1#viewer@user:bob", "document:r1#viewer@group:eng#member",
			"document:r2#viewer@user:bob", "document:r2#viewer@user:carol", "document:r2#banned@user:alice",
		}},
		{"other type", map[string]any{"resourceType": "group"}, []string{"group:eng#member@user:dave"}},
		{"id", map[string]any{"resourceType": "document", "resourceId": "r1"}, []string{
			"document:r1#owner@user:alice", "document:r1#viewer@user:bob", "document:r1#viewer@group:eng#member",
		}},
		{"id+relation", map[string]any{"resourceType": "document", "resourceId": "r2", "relation": "viewer"}, []string{
			"document:r2#viewer@user:bob", "document:r2#viewer@user:carol",
		}},
		{"relation", map[string]any{"resourceType": "document", "relation": "owner"}, []string{"document:r1#owner@user:alice"}},
		{"subject type", map[string]any{"resourceType": "document", "subject": "group"}, []string{"document:r1#viewer@group:eng#member"}},
		{"subject type user", map[string]any{"resourceType": "document", "relation": "viewer", "subject": "user"}, []string{
			"document:r1#viewer@user:bob", "document:r2#viewer@user:bob", "document:r2#viewer@user:carol",
		}},
		{"subject id", map[string]any{"resourceType": "document", "subject": "user:alice"}, []string{
			"document:r1#owner@user:alice", "document:r2#banned@user:alice",
		}},
		{"subject set", map[string]any{"resourceType": "document", "subject": "group:eng#member"}, []string{"document:r1#viewer@group:eng#member"}},
		{"all", map[string]any{"resourceType": "document", "resourceId": "r2", "relation": "viewer", "subject": "user:bob"}, []string{"document:r2#viewer@user:bob"}},
		{"none", map[string]any{"resourceType": "document", "resourceId": "r3"}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := relRead(h, c.filter)
			if want := sortedStrings(c.want...); !reflect.DeepEqual(got, want) {
				t.Errorf("filter %v:\n got %v\nwant %v", c.filter, got, want)
			}
		})
	}
}

func TestRelationshipReadPaging(t *testing.T) {
	h := newHarness(t, docApp)
	var want []string
	var rels []map[string]any
	for i := 1; i <= 5; i++ {
		rels = append(rels, rel("document:p", "viewer", fmt.Sprintf("user:u%d", i)))
		want = append(want, fmt.Sprintf("document:p#viewer@user:u%d", i))
	}
	rels = append(rels, rel("group:g", "member", "user:u1")) // another type: not in the pages
	h.write(rels...)

	seen := map[string]bool{}
	var got []string
	cursor := ""
	pages := 0
	for {
		pages++
		if pages > 10 {
			t.Fatalf("paging did not end after 10 pages; collected %v", got)
		}
		body := map[string]any{"filter": map[string]any{"resourceType": "document"}, "pageSize": 2}
		if cursor != "" {
			body["cursor"] = cursor
		}
		out := h.must(200, "POST", "/v1/relationships/read", body)
		page := relStrings(t, out["relationships"])
		if len(page) > 2 {
			t.Fatalf("page %d has %d relationships, pageSize was 2: %v", pages, len(page), page)
		}
		for _, r := range page {
			if seen[r] {
				t.Fatalf("page %d repeats %s", pages, r)
			}
			seen[r] = true
			got = append(got, r)
		}
		nc, present := out["nextCursor"]
		if !present {
			t.Fatalf("page %d: no nextCursor key: %v", pages, out)
		}
		if nc == nil {
			break
		}
		s, ok := nc.(string)
		if !ok || s == "" {
			t.Fatalf("page %d: nextCursor = %#v, want a non-empty string or null", pages, nc)
		}
		if len(page) != 2 {
			t.Fatalf("page %d: %d relationships but a next cursor", pages, len(page))
		}
		cursor = s
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("collected %v, want %v", got, want)
	}
	if pages != 3 {
		t.Errorf("5 relationships took %d pages of 2, want 3", pages)
	}

	// page size bounds name the field
	mustProblem(h, 400, "invalid_argument", "pageSize", "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document"}, "pageSize": 0})
	mustProblem(h, 400, "invalid_argument", "pageSize", "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document"}, "pageSize": 1001})
}

func TestRelationshipWriteTooManyUpdates(t *testing.T) {
	h := newHarness(t, docApp)
	many := func(n int) map[string]any {
		rels := make([]map[string]any, n)
		for i := range rels {
			rels[i] = rel(fmt.Sprintf("document:d%d", i), "viewer", "user:alice")
		}
		return relUpdates("touch", rels...)
	}
	out := mustProblem(h, 400, "invalid_argument", "updates", "POST", "/v1/relationships/write", many(1001))
	if d, _ := out["detail"].(string); !strings.Contains(d, "updates") {
		t.Errorf("detail %q does not name updates", d)
	}
	// nothing of the refused batch was written
	if got := relRead(h, map[string]any{"resourceType": "document", "resourceId": "d0"}); len(got) != 0 {
		t.Fatalf("refused batch wrote %v", got)
	}
	// 1000 is the limit, not beyond it
	h.must(200, "POST", "/v1/relationships/write", many(1000))
	if p := h.check("document:d999", "view", "user:alice"); p != "HAS_PERMISSION" {
		t.Fatalf("last of 1000 updates: view = %s, want HAS_PERMISSION", p)
	}
	// an empty batch is bad input too
	mustProblem(h, 400, "invalid_argument", "updates", "POST", "/v1/relationships/write", map[string]any{"updates": []any{}})
}

func TestRelationshipWriteUnknownNames(t *testing.T) {
	h := newHarness(t, docApp)
	cases := []struct {
		name  string
		rels  []map[string]any
		field string
	}{
		{"unknown relation", []map[string]any{rel("document:1", "nosuch", "user:alice")}, "updates[0].relationship.relation"},
		{"unknown resource type", []map[string]any{rel("widget:1", "viewer", "user:alice")}, "updates[0].relationship.resource"},
		{"unknown subject type", []map[string]any{rel("document:1", "viewer", "robot:r2")}, "updates[0].relationship.subject"},
		{"second update", []map[string]any{rel("document:1", "viewer", "user:alice"), rel("document:1", "nosuch", "user:bob")}, "updates[1].relationship.relation"},
		{"malformed resource", []map[string]any{rel("document", "viewer", "user:alice")}, "updates[0].relationship.resource"},
		{"malformed subject", []map[string]any{rel("document:1", "viewer", "alice")}, "updates[0].relationship.subject"},
		{"subject type not allowed there", []map[string]any{rel("document:1", "owner", "group:g#member")}, "updates[0].relationship.subject"},
		{"expiration not allowed there", []map[string]any{withField(rel("document:1", "owner", "user:alice"), "expiresAt", "2030-01-01T00:00:00Z")}, "updates[0].relationship.expiresAt"},
		{"caveat not allowed there", []map[string]any{withField(rel("document:1", "owner", "user:alice"), "caveat", map[string]any{"name": "ip_allowed", "context": map[string]any{"cidr": "10.0.0.0/8"}})}, "updates[0].relationship.caveat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mustProblem(h, 400, "invalid_argument", c.field, "POST", "/v1/relationships/write", relUpdates("touch", c.rels...))
		})
	}
	// the batch with a bad second update is atomic: the good first one is not stored
	if p := h.check("document:1", "view", "user:alice"); p != "NO_PERMISSION" {
		t.Fatalf("alice view after refused batches = %s, want NO_PERMISSION", p)
	}
	if got := relRead(h, map[string]any{"resourceType": "document"}); len(got) != 0 {
		t.Fatalf("refused batches stored %v", got)
	}
}

func TestRelationshipReadRequiresResourceType(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:1", "viewer", "user:alice"))
	for _, f := range []map[string]any{
		{},
		{"resourceId": "1"},
		{"relation": "viewer", "subject": "user:alice"},
	} {
		mustProblem(h, 400, "invalid_argument", "filter.resourceType", "POST", "/v1/relationships/read", map[string]any{"filter": f})
	}
	// an unknown type is also bad input naming the field
	mustProblem(h, 400, "invalid_argument", "filter.resourceType", "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "widget"}})
}

func TestRelationshipWrittenAtConsistency(t *testing.T) {
	h := newHarness(t, docApp)
	tok := h.write(rel("document:t", "viewer", "user:tess"))
	out := h.must(200, "POST", "/v1/check", map[string]any{
		"resource": "document:t", "permission": "view", "subject": "user:tess",
		"consistency": map[string]any{"atLeastAsFresh": tok},
	})
	if out["allowed"] != true || out["permissionship"] != "HAS_PERMISSION" {
		t.Fatalf("check at least as fresh as the write: %v, want allowed", out)
	}
	if s, _ := out["checkedAt"].(string); s == "" {
		t.Errorf("check returned no checkedAt: %v", out)
	}

	// the token of a delete is usable the same way and sees the delete
	del := h.must(200, "POST", "/v1/relationships/write", relUpdates("delete", rel("document:t", "viewer", "user:tess")))
	tok2, _ := del["writtenAt"].(string)
	if tok2 == "" || tok2 == tok {
		t.Fatalf("delete writtenAt = %q (first write %q), want a new token", tok2, tok)
	}
	out = h.must(200, "POST", "/v1/check", map[string]any{
		"resource": "document:t", "permission": "view", "subject": "user:tess",
		"consistency": map[string]any{"atLeastAsFresh": tok2},
	})
	if out["allowed"] != false || out["permissionship"] != "NO_PERMISSION" {
		t.Fatalf("check at least as fresh as the delete: %v, want denied", out)
	}
	// the same token reads relationships as fresh
	out = h.must(200, "POST", "/v1/relationships/read", map[string]any{
		"filter": map[string]any{"resourceType": "document"}, "consistency": map[string]any{"atLeastAsFresh": tok2},
	})
	if got := relStrings(t, out["relationships"]); len(got) != 0 {
		t.Fatalf("read after delete: %v, want none", got)
	}
}

// TestFinding11RawWriteToSystemRelationRefused is issue 13's finding 11: a raw
// graph write of organization:zeta#parent@organization:cust gave a tenant a
// parent its directory rows did not show (here a cycle, which made the
// tenant's checks fail with "max depth exceeded"). Relationships of system
// definitions are the directory's: POST /v1/relationships/write refuses any
// update to them with 422 naming the relation, and writes nothing of the batch.
func TestFinding11RawWriteToSystemRelationRefused(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	region, reseller := "organization:"+tr.region, "organization:"+tr.reseller
	fresh := map[string]any{"fullyConsistent": true}
	allowed := func(resource, permission, subject string) bool {
		t.Helper()
		out := h.must(200, "POST", "/v1/check", map[string]any{"resource": resource, "permission": permission, "subject": subject, "consistency": fresh})
		return out["allowed"] == true
	}

	// the attack: the reseller (a tenant root) under its own grandchild
	attack := rel(reseller, "parent", region)
	out := mustProblem(h, 422, "system_relation", "updates[0].relationship.relation", "POST", "/v1/relationships/write", relUpdates("touch", attack))
	if d, _ := out["detail"].(string); !strings.Contains(d, "organization#parent") {
		t.Errorf("the detail should name the relation organization#parent: %q", d)
	}
	// after a valid app update the refusal names its index, and nothing of the batch is written
	doc := rel("document:plan", "org", region)
	mustProblem(h, 422, "system_relation", "updates[1].relationship.relation", "POST", "/v1/relationships/write", relUpdates("touch", doc, attack))
	if got := relRead(h, map[string]any{"resourceType": "document", "resourceId": "plan"}); len(got) != 0 {
		t.Errorf("a refused batch wrote %v", got)
	}
	// the graph and the directory are unchanged, and the tenant's checks still answer
	if got := relRead(h, map[string]any{"resourceType": "organization", "resourceId": tr.reseller, "relation": "parent"}); len(got) != 0 {
		t.Fatalf("the reseller has a parent in the graph: %v", got)
	}
	wantEqual(t, "reseller's parent in the directory", p.do(200, "GET", "/v1/organizations/reseller", nil)["parent"], nil)
	if !allowed(region, "manage", "user:"+tr.resellerAdmin) || !allowed(region, "access", "user:"+tr.regionMember) {
		t.Fatal("after the refused write the tenant's checks no longer allow its admin and member")
	}
	if allowed(reseller, "access", "user:"+tr.regionMember) {
		t.Fatal("the region's member reaches the reseller")
	}

	// deleting what the directory wrote is refused too: the customer keeps its parent
	mustProblem(h, 422, "system_relation", "updates[0].relationship.relation", "POST", "/v1/relationships/write",
		relUpdates("delete", rel("organization:"+tr.customer, "parent", reseller)))
	wantEqual(t, "customer's parent in the graph", relRead(h, map[string]any{"resourceType": "organization", "resourceId": tr.customer, "relation": "parent"}),
		[]string{"organization:" + tr.customer + "#parent@" + reseller})

	// every system definition, and any operation
	for _, c := range []struct{ op, resource, relation, subject string }{
		{"touch", region, "admin", "user:mallory"},
		{"create", "group:g1", "member", "user:mallory"},
		{"touch", "role:r1", "grants_manage", "user:*"},
		{"touch", "role_binding:b1", "subject", "user:mallory"},
		{"touch", "service_account:s1", "org", region},
		{"touch", "impersonation:i1", "target", "user:" + tr.regionMember},
		{"touch", "platform:trellis", "admin", "user:mallory"},
		{"delete", "platform:trellis", "support", "user:mallory"},
	} {
		out := mustProblem(h, 422, "system_relation", "updates[0].relationship.relation", "POST", "/v1/relationships/write", relUpdates(c.op, rel(c.resource, c.relation, c.subject)))
		typ, _, _ := strings.Cut(c.resource, ":")
		if d, _ := out["detail"].(string); !strings.Contains(d, typ+"#"+c.relation) {
			t.Errorf("%s %s#%s: detail %q does not name the relation", c.op, c.resource, c.relation, d)
		}
	}
	if allowed(region, "manage", "user:mallory") {
		t.Fatal("a refused write granted mallory")
	}

	// app definitions that point at organizations stay writable
	h.must(200, "POST", "/v1/relationships/write", relUpdates("touch", doc))
	if !allowed("document:plan", "edit", "user:"+tr.resellerAdmin) {
		t.Error("the reseller's admin should edit a document of its region")
	}
}

// withField returns r with one more member.
func withField(r map[string]any, name string, value any) map[string]any {
	r[name] = value
	return r
}
