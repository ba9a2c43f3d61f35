package api_test

import (
	"fmt"
	"strings"
	"testing"
)

// Raw relationship writes and schema changes are events on the provider's
// (platform) chain, listed by GET /v1/audit and verified by GET /v1/audit/verify.
func TestRawWritesAndSchemaChangesAudited(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()
	tok := h.write(rel("document:d1", "owner", "user:ann"), rel("document:d1", "viewer", "user:bob"))

	events := items(t, p.do(200, "GET", "/v1/audit?action=relationships.write", nil), "events")
	if len(events) != 1 {
		t.Fatalf("relationships.write events: %v", events)
	}
	d, _ := events[0]["details"].(map[string]any)
	wantEqual(t, "event", []any{events[0]["actor"], d["count"], d["writtenAt"], strs(d["updates"])},
		[]any{"provider:admin-key", float64(2), tok, []string{"touch document:d1#owner@user:ann", "touch document:d1#viewer@user:bob"}})

	// through a key: the key is named
	k := p.do(201, "POST", "/v1/api-keys", map[string]any{"name": "sync", "scopes": []string{"relationships:write"}})
	h.as(str(k, "secret")).do(200, "POST", "/v1/relationships/write", map[string]any{"updates": []any{
		map[string]any{"operation": "delete", "relationship": rel("document:d1", "viewer", "user:bob")}}})
	// a large write: count, digest and sample
	var many []any
	for i := range 150 {
		many = append(many, map[string]any{"operation": "touch", "relationship": rel(fmt.Sprintf("document:m%d", i), "owner", "user:ann")})
	}
	p.do(200, "POST", "/v1/relationships/write", map[string]any{"updates": many})
	events = items(t, p.do(200, "GET", "/v1/audit?action=relationships.write", nil), "events")
	if len(events) != 3 {
		t.Fatalf("relationships.write events: %d, want 3", len(events))
	}
	byKey, _ := events[1]["details"].(map[string]any)
	wantEqual(t, "by key", []any{events[1]["actor"], byKey["apiKey"], strs(byKey["updates"])},
		[]any{"provider:" + str(k, "id"), str(k, "id"), []string{"delete document:d1#viewer@user:bob"}})
	large, _ := events[2]["details"].(map[string]any)
	if large["count"] != float64(150) || !strings.HasPrefix(fmt.Sprint(large["digest"]), "sha256:") || len(strs(large["sample"])) != 10 || large["updates"] != nil {
		t.Errorf("large write details: %v", large)
	}

	// a refused write is not an event
	p.fails(400, "invalid_argument", "", "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "fly", "relationship": rel("document:d1", "owner", "user:ann")}}})

	// a schema change: version, previous version, changes
	p.do(200, "PUT", "/v1/schema", map[string]any{"text": docApp + "\ndefinition folder {\n\trelation owner: user\n}\n"})
	events = items(t, p.do(200, "GET", "/v1/audit?action=schema.apply", nil), "events")
	if len(events) != 1 {
		t.Fatalf("schema.apply events: %v", events)
	}
	sd, _ := events[0]["details"].(map[string]any)
	if sd["version"] != float64(2) || sd["previousVersion"] != float64(1) || !strings.Contains(strings.Join(strs(sd["changes"]), ","), "folder") ||
		events[0]["target"] != "schema:v2" {
		t.Errorf("schema.apply event: %v", events[0])
	}
	if v := p.do(200, "GET", "/v1/audit/verify", nil); v["valid"] != true || v["events"] != float64(5) {
		t.Errorf("platform chain: %v", v)
	}
}
