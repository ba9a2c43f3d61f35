package api_test

import "testing"

// Bug (a) of issue 15: a caveat name with a prefix, valid in SpiceDB and
// accepted by PUT /v1/schema, is accepted by POST /v1/relationships/write and
// decides the check.
func TestPrefixedCaveatName(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()
	p.do(200, "PUT", "/v1/schema", map[string]any{"text": `
caveat app/only_tier(tier string) {
	tier == "gold"
}

definition app/report {
	relation reader: user with app/only_tier
	permission read = reader
}
`})
	r := rel("app/report:q1", "reader", "user:ann")
	r["caveat"] = map[string]any{"name": "app/only_tier", "context": map[string]any{}}
	h.writeUpdates(map[string]any{"operation": "touch", "relationship": r})
	for tier, want := range map[string]bool{"gold": true, "tin": false} {
		out := p.do(200, "POST", "/v1/check", map[string]any{"resource": "app/report:q1", "permission": "read", "subject": "user:ann", "context": map[string]any{"tier": tier}})
		if out["allowed"] != want {
			t.Errorf("tier %s: %v, want allowed %v", tier, out, want)
		}
	}
	// still refused: what SpiceDB's pattern refuses
	for _, name := range []string{"/only_tier", "-x", "a b", ""} {
		bad := rel("app/report:q1", "reader", "user:ann")
		bad["caveat"] = map[string]any{"name": name, "context": map[string]any{}}
		p.fails(400, "invalid_argument", "updates[0].relationship.caveat.name", "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": bad}}})
	}
}
