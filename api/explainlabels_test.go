package api_test

import (
	"strings"
	"testing"
)

// Bug (b) of issue 15: explain paths name organizations, users, groups and
// roles as a person reads them (added fields; the refs stay).
func TestExplainLabels(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	p := h.provider()
	g := str(p.do(201, "POST", "/v1/organizations/globex/groups", map[string]any{"name": "Planners"}), "id")
	p.do(200, "PUT", "/v1/organizations/globex/groups/"+g+"/members/"+w.gary, nil)
	h.write(rel("document:memo", "viewer", "group:"+g+"#member"))

	labels := func(resource, permission, subject string) []string {
		out := p.do(200, "POST", "/v1/explain", map[string]any{"resource": resource, "permission": permission, "subject": subject})
		var got []string
		for _, path := range out["paths"].([]any) {
			for _, step := range path.([]any) {
				st := step.(map[string]any)
				if st["resource"] == nil || st["relation"] == nil || st["subject"] == nil {
					t.Errorf("a step lost its refs: %v", st)
				}
				got = append(got, str(st, "label"))
			}
		}
		return got
	}
	// rita manages globex's plan through northwind, globex's parent
	got := strings.Join(labels("document:globex-plan", "edit", "user:"+w.rita), "\n")
	for _, want := range []string{
		"document:globex-plan has org organization Globex (globex)",
		"organization Globex (globex) has parent organization Northwind (northwind)",
		"organization Northwind (northwind) has admin user rita@northwind.example",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rita's path lacks %q:\n%s", want, got)
		}
	}
	got = strings.Join(labels("document:memo", "view", "user:"+w.gary), "\n")
	for _, want := range []string{"document:memo has viewer group Planners #member", "group Planners has member user gary@globex.example"} {
		if !strings.Contains(got, want) {
			t.Errorf("gary's path lacks %q:\n%s", want, got)
		}
	}
}
