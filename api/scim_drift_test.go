package api_test

import (
	"slices"
	"testing"
)

func subjects(items any) []string {
	var out []string
	for _, it := range items.([]any) {
		out = append(out, str(it.(map[string]any), "subject"))
	}
	slices.Sort(out)
	return out
}

func TestSCIMStatusDriftAndRepair(t *testing.T) {
	w := newSCIMWorld(t)
	h := w.h
	admin := h.as(w.adminTok)
	ann := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "ann@acme.example"}), "id")
	bob := str(w.must(201, "POST", "/scim/v2/acme/Users", map[string]any{"userName": "bob@acme.example"}), "id")
	g := str(w.must(201, "POST", "/scim/v2/acme/Groups", map[string]any{"displayName": "Eng",
		"members": []any{map[string]any{"value": ann}, map[string]any{"value": bob}}}), "id")
	manual := str(admin.do(201, "POST", "/v1/organizations/acme/groups", map[string]any{"name": "Made by hand"}), "id")
	// by hand, after provisioning: ann's membership removed, bob suspended
	admin.do(204, "DELETE", "/v1/organizations/acme/members/"+ann, nil)
	admin.do(200, "PUT", "/v1/organizations/acme/members/"+bob, map[string]any{"status": "suspended"})
	admin.do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Ghost", "roles": []string{"member"}}}})
	h.expect(false, "document:d1", "view", "user:"+ann)
	h.expect(false, "document:d1", "view", "user:"+bob)

	st := admin.do(200, "GET", "/v1/organizations/acme/scim/status", nil)
	counts := st["counts"].(map[string]any)
	drift := st["drift"].(map[string]any)
	if counts["users"] != float64(2) || counts["groups"] != float64(1) {
		t.Fatalf("counts %v", counts)
	}
	want := []string{"user:" + ann, "user:" + bob}
	slices.Sort(want)
	if got := subjects(drift["memberships"]); !slices.Equal(got, want) {
		t.Fatalf("membership drift %v, want %v", got, want)
	}
	if got := subjects(drift["groups"]); !slices.Equal(got, []string{"group:" + g}) {
		t.Fatalf("group drift %v", drift["groups"])
	}
	if got := strs(drift["unmatchedMappings"]); !slices.Equal(got, []string{"Ghost"}) {
		t.Fatalf("unmatched mappings %v", got)
	}
	if got := strs(drift["unprovisionedUsers"]); !slices.Equal(got, []string{"user:" + w.admin}) {
		t.Fatalf("unprovisioned users %v", got)
	}
	if got := strs(drift["unprovisionedGroups"]); !slices.Equal(got, []string{"group:" + manual}) {
		t.Fatalf("unprovisioned groups %v", got)
	}
	users := false
	for _, r := range st["resources"].([]any) {
		r := r.(map[string]any)
		if r["resource"] == "Users" && r["requests"] == float64(2) && r["lastRequest"].(map[string]any)["method"] == "POST" {
			users = true
		}
	}
	if !users {
		t.Fatalf("sync status per resource %v", st["resources"])
	}

	// a dry run lists and changes nothing
	dry := admin.do(200, "POST", "/v1/organizations/acme/scim/repair", map[string]any{"dryRun": true})
	if got := subjects(dry["items"]); len(got) != 3 || dry["dryRun"] != true {
		t.Fatalf("dry run %v", dry)
	}
	if st, _ := w.member(ann); st != "" {
		t.Fatalf("a dry run re-added ann: %q", st)
	}
	// repair re-applies what the provider wants, and says what it changed
	out := admin.do(200, "POST", "/v1/organizations/acme/scim/repair", nil)
	repaired := 0
	for _, it := range out["items"].([]any) {
		repaired += len(strs(it.(map[string]any)["repaired"]))
	}
	if repaired < 3 {
		t.Fatalf("repair %v", out)
	}
	if s, _ := w.member(ann); s != "active" {
		t.Fatalf("ann after repair: %q", s)
	}
	if s, _ := w.member(bob); s != "active" {
		t.Fatalf("bob after repair: %q", s)
	}
	h.expect(true, "document:d1", "view", "user:"+ann)
	h.expect(true, "group:"+g, "member", "user:"+ann)
	h.expect(true, "group:"+g, "member", "user:"+bob)
	after := admin.do(200, "GET", "/v1/organizations/acme/scim/status", nil)["drift"].(map[string]any)
	if len(after["memberships"].([]any)) != 0 || len(after["groups"].([]any)) != 0 {
		t.Fatalf("drift after repair %v", after)
	}
	if ev := h.must(200, "GET", "/v1/organizations/acme/audit?action=scim.repair", nil)["events"].([]any); len(ev) < 3 {
		t.Fatalf("scim.repair events %d", len(ev))
	}
	// status, mappings and repair need manage_scim
	m := createUser(h, "plain@acme.example")
	putMember(h, testKey, "acme", m, "member")
	plain := h.as(h.token(m, ""))
	plain.fails(403, "", "", "GET", "/v1/organizations/acme/scim/status", nil)
	plain.fails(403, "", "", "POST", "/v1/organizations/acme/scim/repair", nil)
	plain.fails(403, "", "", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{}})
	admin.fails(400, "", "mappings[0].roles[0]", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "x", "roles": []string{"no-such-role"}}}})
	admin.fails(400, "", "mappings", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{})
	admin.fails(400, "", "mappings", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mapping": []any{}}) // a typo clears nothing
}
