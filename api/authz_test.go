package api_test

import (
	"reflect"
	"sort"
	"testing"
	"time"
)

// orgTree writes platform -> reseller -> customer -> region with a document in the region
// (raw: the harness adds the lineage the directory writes beside parent).
func orgTree(h *harness) string {
	return h.write(
		rel("organization:reseller", "platform", "platform:acme"),
		rel("platform:acme", "admin", "user:pat"),
		rel("organization:reseller", "admin", "user:rita"),
		rel("organization:customer", "parent", "organization:reseller"),
		rel("organization:customer", "member", "user:carl"),
		rel("organization:region", "parent", "organization:customer"),
		rel("organization:region", "member", "user:rene"),
		rel("organization:sibling", "parent", "organization:reseller"),
		rel("organization:sibling", "member", "user:sid"),
		rel("document:plan", "org", "organization:region"),
		rel("document:memo", "org", "organization:customer"),
		rel("document:notes", "org", "organization:sibling"),
	)
}

func TestCheckFollowsTheOrgTree(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	for _, tc := range []struct{ res, perm, sub, want string }{
		{"document:plan", "view", "user:rene", "HAS_PERMISSION"}, // member of the region
		{"document:plan", "edit", "user:rene", "NO_PERMISSION"},  // members do not manage
		{"document:plan", "edit", "user:rita", "HAS_PERMISSION"}, // reseller admin, 2 parent hops
		{"document:plan", "edit", "user:pat", "HAS_PERMISSION"},  // platform admin, 3 hops
		{"document:plan", "view", "user:carl", "NO_PERMISSION"},  // parent member is not a region member
		{"document:memo", "view", "user:rene", "NO_PERMISSION"},  // region member is not a parent member
		{"document:notes", "view", "user:carl", "NO_PERMISSION"}, // sibling isolation
		{"organization:region", "manage_members", "user:rita", "HAS_PERMISSION"},
		{"organization:reseller", "manage", "user:carl", "NO_PERMISSION"},
	} {
		if got := h.check(tc.res, tc.perm, tc.sub); got != tc.want {
			t.Errorf("%s#%s@%s = %s, want %s", tc.res, tc.perm, tc.sub, got, tc.want)
		}
	}
}

func TestCheckResponseShape(t *testing.T) {
	h := newHarness(t, docApp)
	tok := orgTree(h)
	out := h.must(200, "POST", "/v1/check", map[string]any{
		"resource": "document:plan", "permission": "view", "subject": "user:rene",
		"consistency": map[string]any{"atLeastAsFresh": tok},
	})
	if out["allowed"] != true || out["permissionship"] != "HAS_PERMISSION" || out["cached"] != false {
		t.Fatalf("unexpected check response %v", out)
	}
	if s, _ := out["checkedAt"].(string); s == "" {
		t.Fatalf("checkedAt missing: %v", out)
	}
	out = h.must(200, "POST", "/v1/check", map[string]any{
		"resource": "document:plan", "permission": "view", "subject": "user:nobody",
		"consistency": map[string]any{"fullyConsistent": true},
	})
	if out["allowed"] != false || out["permissionship"] != "NO_PERMISSION" {
		t.Fatalf("unexpected denial %v", out)
	}
}

// TestReadYourWrites: a write is visible to the very next check with the default consistency.
func TestReadYourWrites(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	for i := 0; i < 20; i++ {
		user := "user:new" + string(rune('a'+i))
		if got := h.check("document:plan", "view", user); got != "NO_PERMISSION" {
			t.Fatalf("%s before the write: %s", user, got)
		}
		h.write(rel("document:plan", "viewer", user))
		if got := h.check("document:plan", "view", user); got != "HAS_PERMISSION" {
			t.Fatalf("%s right after the write: %s", user, got)
		}
		h.must(200, "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "delete", "relationship": rel("document:plan", "viewer", user)}}})
		if got := h.check("document:plan", "view", user); got != "NO_PERMISSION" {
			t.Fatalf("%s right after the delete: %s", user, got)
		}
	}
}

func TestCaveatedCheck(t *testing.T) {
	h := newHarness(t, docApp)
	h.must(200, "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{
		"operation": "touch",
		"relationship": map[string]any{"resource": "document:vpn", "relation": "viewer", "subject": "user:ann",
			"caveat": map[string]any{"name": "ip_allowed", "context": map[string]any{"cidr": "10.0.0.0/8"}}},
	}}})
	base := map[string]any{"resource": "document:vpn", "permission": "view", "subject": "user:ann"}
	out := h.must(200, "POST", "/v1/check", base)
	if out["permissionship"] != "CONDITIONAL" || out["allowed"] != false {
		t.Fatalf("without context: %v, want CONDITIONAL and not allowed", out)
	}
	if !reflect.DeepEqual(out["missingContext"], []any{"ip"}) {
		t.Fatalf("missingContext %v, want [ip]", out["missingContext"])
	}
	for ip, want := range map[string]string{"10.1.2.3": "HAS_PERMISSION", "192.168.0.1": "NO_PERMISSION"} {
		body := map[string]any{"resource": "document:vpn", "permission": "view", "subject": "user:ann", "context": map[string]any{"ip": ip}}
		if got := h.must(200, "POST", "/v1/check", body)["permissionship"]; got != want {
			t.Errorf("ip %s: %v, want %s", ip, got, want)
		}
	}
}

func TestExpiringRelationship(t *testing.T) {
	h := newHarness(t, docApp)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	h.must(200, "POST", "/v1/relationships/write", map[string]any{"updates": []any{
		map[string]any{"operation": "touch", "relationship": map[string]any{"resource": "document:d", "relation": "viewer", "subject": "user:old", "expiresAt": past}},
		map[string]any{"operation": "touch", "relationship": map[string]any{"resource": "document:d", "relation": "viewer", "subject": "user:new", "expiresAt": future}},
	}})
	if got := h.check("document:d", "view", "user:old"); got != "NO_PERMISSION" {
		t.Errorf("expired grant: %s", got)
	}
	if got := h.check("document:d", "view", "user:new"); got != "HAS_PERMISSION" {
		t.Errorf("live grant: %s", got)
	}
}

func TestCheckBulkKeepsOrder(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	subjects := []string{"user:rene", "user:carl", "user:rita", "user:sid", "user:pat", "user:nobody"}
	want := []bool{true, false, true, false, true, false}
	var items []any
	for _, s := range subjects {
		items = append(items, map[string]any{"resource": "document:plan", "permission": "view", "subject": s})
	}
	out := h.must(200, "POST", "/v1/check/bulk", map[string]any{"items": items})
	results := out["results"].([]any)
	if len(results) != len(subjects) {
		t.Fatalf("%d results for %d items", len(results), len(subjects))
	}
	for i, r := range results {
		if got := r.(map[string]any)["allowed"]; got != want[i] {
			t.Errorf("item %d (%s): allowed %v, want %v", i, subjects[i], got, want[i])
		}
	}
	// exactly 1,000 items is accepted
	items = items[:0]
	for i := 0; i < 1000; i++ {
		items = append(items, map[string]any{"resource": "document:plan", "permission": "view", "subject": subjects[i%len(subjects)]})
	}
	out = h.must(200, "POST", "/v1/check/bulk", map[string]any{"items": items})
	if n := len(out["results"].([]any)); n != 1000 {
		t.Fatalf("1,000 items gave %d results", n)
	}
}

func TestLookupResourcesPages(t *testing.T) {
	h := newHarness(t, docApp)
	var want []string
	var rels []map[string]any
	for i := 0; i < 7; i++ {
		id := "d" + string(rune('0'+i))
		want = append(want, id)
		rels = append(rels, rel("document:"+id, "viewer", "user:ann"))
	}
	rels = append(rels, rel("document:other", "viewer", "user:bob"))
	h.write(rels...)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		body := map[string]any{"resourceType": "document", "permission": "view", "subject": "user:ann", "pageSize": 3}
		if cursor != "" {
			body["cursor"] = cursor
		}
		out := h.must(200, "POST", "/v1/lookup/resources", body)
		page := out["resources"].([]any)
		if len(page) > 3 {
			t.Fatalf("page of %d > pageSize 3", len(page))
		}
		for _, r := range page {
			m := r.(map[string]any)
			if m["permissionship"] != "HAS_PERMISSION" {
				t.Errorf("resource %v permissionship %v", m["id"], m["permissionship"])
			}
			got = append(got, m["id"].(string))
		}
		next, _ := out["nextCursor"].(string)
		if next == "" {
			if _, present := out["nextCursor"]; !present {
				t.Fatal("nextCursor key missing on the last page")
			}
			break
		}
		cursor = next
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lookup found %v, want %v", got, want)
	}
}

// TestLookupResourcesListsEachOnce: a document ann reaches by several paths
// (owner, viewer, viewer through a wildcard) is listed once, paged or not,
// and pages do not repeat one another.
func TestLookupResourcesListsEachOnce(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:a", "owner", "user:ann"), rel("document:a", "viewer", "user:ann"), rel("document:a", "viewer", "user:*"),
		rel("document:b", "viewer", "user:ann"), rel("document:b", "viewer", "user:*"))
	for _, size := range []int{0, 1, 2, 10} {
		var got []string
		cursor := ""
		for pages := 0; pages < 20; pages++ {
			body := map[string]any{"resourceType": "document", "permission": "view", "subject": "user:ann"}
			if size > 0 {
				body["pageSize"] = size
			}
			if cursor != "" {
				body["cursor"] = cursor
			}
			out := h.must(200, "POST", "/v1/lookup/resources", body)
			page := pluck(items(t, out, "resources"), "id")
			got = append(got, page...)
			if cursor, _ = out["nextCursor"].(string); cursor == "" {
				break
			}
		}
		// each document once across the pages, in id order
		if !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("pageSize %d: found %v, want [a b]", size, got)
		}
	}
	mustProblem(h, 400, "invalid_argument", "cursor", "POST", "/v1/lookup/resources",
		map[string]any{"resourceType": "document", "permission": "view", "subject": "user:ann", "cursor": "not-a-cursor"})
}

func TestLookupSubjects(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	out := h.must(200, "POST", "/v1/lookup/subjects", map[string]any{"resource": "document:plan", "permission": "edit", "subjectType": "user"})
	var got []string
	for _, s := range out["subjects"].([]any) {
		got = append(got, s.(map[string]any)["id"].(string))
	}
	sort.Strings(got)
	if want := []string{"pat", "rita"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("editors of document:plan = %v, want %v", got, want)
	}
}

func TestExplainGivesTheGrantingChain(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	out := h.must(200, "POST", "/v1/explain", map[string]any{"resource": "document:plan", "permission": "edit", "subject": "user:rita"})
	if out["allowed"] != true {
		t.Fatalf("explain not allowed: %v", out)
	}
	paths := out["paths"].([]any)
	if len(paths) != 1 {
		t.Fatalf("want exactly one path, got %v", paths)
	}
	var chain []string
	for _, step := range paths[0].([]any) {
		m := step.(map[string]any)
		chain = append(chain, m["resource"].(string)+"#"+m["relation"].(string)+"@"+m["subject"].(string))
	}
	want := []string{
		"document:plan#org@organization:region",
		"organization:region#parent@organization:customer",
		"organization:customer#parent@organization:reseller",
		"organization:reseller#admin@user:rita",
	}
	if !reflect.DeepEqual(chain, want) {
		t.Fatalf("path\n%v\nwant\n%v", chain, want)
	}
	out = h.must(200, "POST", "/v1/explain", map[string]any{"resource": "document:plan", "permission": "edit", "subject": "user:sid"})
	if out["allowed"] != false || len(out["paths"].([]any)) != 0 {
		t.Fatalf("denied explain should have no paths: %v", out)
	}
	// a grant through a nested group shows both hops
	h.write(rel("document:gdoc", "viewer", "group:eng#member"), rel("group:eng", "member", "group:core#member"), rel("group:core", "member", "user:gus"))
	out = h.must(200, "POST", "/v1/explain", map[string]any{"resource": "document:gdoc", "permission": "view", "subject": "user:gus"})
	if n := len(out["paths"].([]any)); n != 1 || len(out["paths"].([]any)[0].([]any)) != 3 {
		t.Fatalf("nested group explain: %v", out["paths"])
	}
}

// TestImpersonationActor: a check with actor is allowed only while the impersonation is live,
// the target holds the permission and the resource lies in the impersonation's organization subtree.
func TestImpersonationActor(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	body := map[string]any{"resource": "document:plan", "permission": "view", "subject": "user:rene", "actor": "user:sam"}
	if got := h.must(200, "POST", "/v1/check", body)["allowed"]; got != false {
		t.Fatalf("no impersonation: allowed %v", got)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	h.writeUpdates(
		map[string]any{"operation": "touch", "relationship": rel("impersonation:i1", "target", "user:rene")},
		map[string]any{"operation": "touch", "relationship": rel("impersonation:i1", "org", "organization:customer")},
		map[string]any{"operation": "touch", "relationship": map[string]any{"resource": "impersonation:i1", "relation": "actor", "subject": "user:sam", "expiresAt": future}},
	)
	if got := h.must(200, "POST", "/v1/check", body)["allowed"]; got != true {
		t.Fatalf("live impersonation, target holds view: allowed %v", got)
	}
	body["permission"] = "edit"
	if got := h.must(200, "POST", "/v1/check", body)["allowed"]; got != false {
		t.Fatalf("target lacks edit: allowed %v", got)
	}
	body["permission"], body["actor"] = "view", "user:mallory"
	if got := h.must(200, "POST", "/v1/check", body)["allowed"]; got != false {
		t.Fatalf("another actor: allowed %v", got)
	}
}

// TestEngineDownFailsClosed: with the engine gone, checks answer 503 and never allowed:true.
func TestEngineDownFailsClosed(t *testing.T) {
	h := newHarness(t, docApp)
	orgTree(h)
	if got := h.check("document:plan", "view", "user:rene"); got != "HAS_PERMISSION" {
		t.Fatalf("before: %s", got)
	}
	h.eng.Close()
	for _, path := range []string{"/v1/check", "/v1/explain"} {
		status, out := h.call("POST", path, map[string]any{"resource": "document:plan", "permission": "view", "subject": "user:rene"})
		if status != 503 || out["allowed"] == true || out["code"] != "unavailable" {
			t.Errorf("%s with the engine down: %d %v, want 503 unavailable", path, status, out)
		}
	}
	status, out := h.call("POST", "/v1/check/bulk", map[string]any{"items": []any{map[string]any{"resource": "document:plan", "permission": "view", "subject": "user:rene"}}})
	if status != 503 || out["results"] != nil {
		t.Errorf("bulk with the engine down: %d %v", status, out)
	}
	if status, _ := h.callAs("", "GET", "/readyz", nil); status != 503 {
		t.Errorf("readyz with the engine down: %d, want 503", status)
	}
	if status, _ := h.callAs("", "GET", "/healthz", nil); status != 200 {
		t.Errorf("healthz is process liveness: %d, want 200", status)
	}
}
