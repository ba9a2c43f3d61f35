package api_test

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// schemaGet returns GET /v1/schema.
func schemaGet(h *harness) map[string]any {
	h.t.Helper()
	return h.must(200, "GET", "/v1/schema", nil)
}

// schemaVersion returns the current version number.
func schemaVersion(h *harness) int {
	h.t.Helper()
	v, ok := schemaGet(h)["version"].(float64)
	if !ok {
		h.t.Fatalf("GET /v1/schema: version is not a number")
	}
	return int(v)
}

func countMatches(pattern, text string) int {
	return len(regexp.MustCompile(pattern).FindAllStringIndex(text, -1))
}

// change is one entry of a diff's changes.
type change struct{ kind, definition, name string }

func diffChanges(t *testing.T, out map[string]any) []change {
	t.Helper()
	list, ok := out["changes"].([]any)
	if !ok {
		t.Fatalf("diff: changes is %T, want an array: %v", out["changes"], out)
	}
	var got []change
	for _, e := range list {
		m, _ := e.(map[string]any)
		k, _ := m["kind"].(string)
		d, _ := m["definition"].(string)
		n, _ := m["name"].(string)
		got = append(got, change{k, d, n})
	}
	return got
}

func hasChange(cs []change, c change) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func impactOf(t *testing.T, out map[string]any) map[string]any {
	t.Helper()
	im, ok := out["impact"].(map[string]any)
	if !ok {
		t.Fatalf("diff: impact is %T, want an object: %v", out["impact"], out)
	}
	return im
}

// plainApp is docApp without its caveat (see TestSchemaChangeWithCaveat).
const plainApp = `
definition document {
	relation org: organization
	relation owner: user
	relation viewer: user | user:* | group#member | user with expiration
	relation banned: user
	permission edit = owner + org->manage
	permission view = (edit + viewer + org->access) - banned
}
`

// folderApp is plainApp plus a folder definition.
const folderApp = plainApp + `
definition folder {
	relation owner: user
	permission manage = owner
}
`

func TestSchemaGet(t *testing.T) {
	h := newHarness(t, docApp)
	out := schemaGet(h)
	if out["version"] != float64(1) {
		t.Errorf("version = %v, want 1", out["version"])
	}
	text, _ := out["text"].(string)
	for _, want := range []string{"definition organization", "definition user", "definition document", "caveat ip_allowed", "permission view = (edit + viewer + org->access) - banned"} {
		if !strings.Contains(text, want) {
			t.Errorf("text does not contain %q:\n%s", want, text)
		}
	}
	if out["appText"] != docApp {
		t.Errorf("appText = %q, want the app text applied", out["appText"])
	}
	s, _ := out["appliedAt"].(string)
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("appliedAt %q is not RFC 3339: %v", s, err)
	}
	if d := time.Since(at); d < 0 || d > time.Minute {
		t.Errorf("appliedAt %s is not recent", at)
	}
}

func TestSchemaPutAndVersions(t *testing.T) {
	before := time.Now().Add(-time.Second) // version 1 is applied while the harness starts
	h := newHarness(t, plainApp)

	out := h.must(200, "PUT", "/v1/schema", map[string]any{"text": folderApp})
	if out["version"] != float64(2) {
		t.Fatalf("PUT: version = %v, want 2", out["version"])
	}
	got := schemaGet(h)
	if got["version"] != float64(2) || got["appText"] != folderApp {
		t.Fatalf("GET after PUT: version %v, appText %q; want 2 and the new text", got["version"], got["appText"])
	}
	if text, _ := got["text"].(string); !strings.Contains(text, "definition folder") || !strings.Contains(text, "definition organization") {
		t.Fatalf("GET text lacks the new or the system definitions:\n%s", text)
	}
	// the new definition is live
	h.write(rel("folder:f", "owner", "user:olga"))
	if p := h.check("folder:f", "manage", "user:olga"); p != "HAS_PERMISSION" {
		t.Fatalf("folder manage after PUT = %s, want HAS_PERMISSION", p)
	}

	// expectedVersion mismatch: 409, nothing applied
	mustProblem(h, 409, "conflict", "", "PUT", "/v1/schema", map[string]any{"text": plainApp + "\ndefinition tag {}\n", "expectedVersion": 1})
	if v := schemaVersion(h); v != 2 {
		t.Fatalf("version after a refused PUT = %d, want 2", v)
	}
	// a matching expectedVersion applies
	third := folderApp + "\ndefinition tag {}\n"
	out = h.must(200, "PUT", "/v1/schema", map[string]any{"text": third, "expectedVersion": 2})
	if out["version"] != float64(3) {
		t.Fatalf("PUT with expectedVersion 2: version = %v, want 3", out["version"])
	}
	if got := schemaGet(h); got["version"] != float64(3) || got["appText"] != third {
		t.Fatalf("GET: version %v appText %q, want 3 and the third text", got["version"], got["appText"])
	}

	// a syntax error is bad input naming text, nothing applied
	mustProblem(h, 400, "invalid_argument", "text", "PUT", "/v1/schema", map[string]any{"text": "definition broken {"})
	// text is required
	mustProblem(h, 400, "invalid_argument", "text", "PUT", "/v1/schema", map[string]any{})

	vs := h.must(200, "GET", "/v1/schema/versions", nil)
	list, _ := vs["versions"].([]any)
	if len(list) != 3 {
		t.Fatalf("versions: %d entries, want 3: %v", len(list), vs)
	}
	var prev time.Time
	for i, e := range list {
		m, _ := e.(map[string]any)
		if m["version"] != float64(i+1) {
			t.Errorf("versions[%d].version = %v, want %d", i, m["version"], i+1)
		}
		s, _ := m["appliedAt"].(string)
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Errorf("versions[%d].appliedAt %q is not RFC 3339", i, s)
			continue
		}
		if at.Before(before) || at.After(time.Now().Add(time.Second)) || at.Before(prev) {
			t.Errorf("versions[%d].appliedAt %s out of order or range", i, at)
		}
		prev = at
		if by, _ := m["appliedBy"].(string); by == "" {
			t.Errorf("versions[%d].appliedBy is empty: %v", i, m)
		}
	}
	// the two API changes were made by the same caller
	if a, b := list[1].(map[string]any)["appliedBy"], list[2].(map[string]any)["appliedBy"]; a != b {
		t.Errorf("appliedBy of versions 2 and 3 differ: %v, %v", a, b)
	}
}

func TestSchemaSystemDefinitions(t *testing.T) {
	h := newHarness(t, plainApp)

	// redefining a system definition differently is refused, naming it
	out := mustProblem(h, 422, "", "", "PUT", "/v1/schema", map[string]any{"text": plainApp + "\ndefinition organization {\n\trelation extra: user\n}\n"})
	if d, _ := out["detail"].(string); !strings.Contains(d, "organization") {
		t.Errorf("422 detail %q does not name organization", d)
	}
	if v := schemaVersion(h); v != 1 {
		t.Fatalf("version after a refused PUT = %d, want 1", v)
	}
	// diff and validate refuse it as well
	if code, out := h.call("POST", "/v1/schema/diff", map[string]any{"text": "definition organization {\n\trelation extra: user\n}\n"}); code != 422 {
		t.Errorf("diff redefining organization: status %d, want 422: %v", code, out)
	}
	val := h.must(200, "POST", "/v1/schema/validate", map[string]any{"text": "definition organization {\n\trelation extra: user\n}\n"})
	if val["valid"] != false {
		t.Errorf("validate redefining organization: %v, want valid false", val)
	}

	// repeating `definition user {}` verbatim and `use expiration` is accepted (deduplicated)
	app := "use expiration\n\ndefinition user {}\n" + plainApp
	out = h.must(200, "PUT", "/v1/schema", map[string]any{"text": app})
	if out["version"] != float64(2) {
		t.Fatalf("PUT repeating user: version = %v, want 2", out["version"])
	}
	got := schemaGet(h)
	if got["appText"] != app {
		t.Errorf("appText = %q, want %q", got["appText"], app)
	}
	text, _ := got["text"].(string)
	if n := countMatches(`(?m)^\s*definition user\s*\{`, text); n != 1 {
		t.Errorf("composed text defines user %d times, want 1:\n%s", n, text)
	}
	if n := countMatches(`(?m)^\s*use expiration\b`, text); n != 1 {
		t.Errorf("composed text has %d `use expiration` lines, want 1:\n%s", n, text)
	}
	// and expiration still works
	r := rel("document:x", "viewer", "user:xena")
	r["expiresAt"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	h.write(r)
	if p := h.check("document:x", "view", "user:xena"); p != "HAS_PERMISSION" {
		t.Errorf("expiring viewer after PUT = %s, want HAS_PERMISSION", p)
	}
}

// plainAppNoBanned is plainApp without the banned relation.
const plainAppNoBanned = `
definition document {
	relation org: organization
	relation owner: user
	relation viewer: user | user:* | group#member | user with expiration
	permission edit = owner + org->manage
	permission view = edit + viewer + org->access
}
`

func TestSchemaInUse(t *testing.T) {
	h := newHarness(t, plainApp)
	banned := []map[string]any{rel("document:1", "banned", "user:mallory"), rel("document:2", "banned", "user:trudy")}
	h.write(banned...)
	h.write(rel("document:1", "viewer", "user:alice"))

	out := mustProblem(h, 422, "schema_in_use", "", "PUT", "/v1/schema", map[string]any{"text": plainAppNoBanned})
	if d, _ := out["detail"].(string); d == "" {
		t.Errorf("422 without detail: %v", out)
	}
	got := schemaGet(h)
	if got["version"] != float64(1) || got["appText"] != plainApp {
		t.Fatalf("after refused PUT: version %v appText %q, want 1 and plainApp", got["version"], got["appText"])
	}
	if vs := h.must(200, "GET", "/v1/schema/versions", nil); len(vs["versions"].([]any)) != 1 {
		t.Fatalf("refused PUT added a version: %v", vs)
	}
	// the old schema is still the one in force
	if p := h.check("document:1", "view", "user:mallory"); p != "NO_PERMISSION" {
		t.Fatalf("mallory view = %s, want NO_PERMISSION", p)
	}
	h.write(rel("document:3", "banned", "user:eve"))
	h.must(200, "POST", "/v1/relationships/write", relUpdates("delete", append(banned, rel("document:3", "banned", "user:eve"))...))

	// with the relationships gone the same PUT succeeds
	if out := h.must(200, "PUT", "/v1/schema", map[string]any{"text": plainAppNoBanned}); out["version"] != float64(2) {
		t.Fatalf("PUT after deleting: version = %v, want 2", out["version"])
	}
	if got := schemaGet(h); got["version"] != float64(2) || got["appText"] != plainAppNoBanned {
		t.Fatalf("GET: version %v appText %q", got["version"], got["appText"])
	}
	mustProblem(h, 400, "invalid_argument", "updates[0].relationship.relation", "POST", "/v1/relationships/write", relUpdates("touch", rel("document:1", "banned", "user:mallory")))
	if p := h.check("document:1", "view", "user:alice"); p != "HAS_PERMISSION" {
		t.Fatalf("alice view after the change = %s, want HAS_PERMISSION", p)
	}
}

func TestSchemaValidate(t *testing.T) {
	h := newHarness(t, docApp)
	validate := func(text string) map[string]any {
		t.Helper()
		return h.must(200, "POST", "/v1/schema/validate", map[string]any{"text": text})
	}

	out := validate(folderApp)
	if out["valid"] != true {
		t.Fatalf("valid text: %v", out)
	}
	if errs, ok := out["errors"].([]any); !ok || len(errs) != 0 {
		t.Fatalf("valid text: errors = %#v, want []", out["errors"])
	}

	cases := []struct {
		name string
		text string
		line int
		word string // the bad line contains it; the column must point at or before it
	}{
		{"syntax", "// folders\n\ndefinition folder {\n\trelation owner: user\n\trelation viewer user\n\tpermission view = owner\n}\n", 5, "viewer"},
		{"unknown relation", "\n\n// folders\ndefinition folder {\n\trelation owner: user\n\n\tpermission view = owner + editor\n}\n", 7, "editor"},
		{"unknown subject type", "definition folder {\n\trelation owner: user\n\trelation viewer: person\n\tpermission view = owner + viewer\n}\n", 3, "person"},
		{"unknown relation after system ones", docApp + "\ndefinition folder {\n\trelation parent: organization\n\tpermission view = parent->nosuch + missing\n}\n",
			strings.Count(docApp, "\n") + 4, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := validate(c.text)
			if out["valid"] != false {
				t.Fatalf("valid = %v, want false: %v", out["valid"], out)
			}
			errs, _ := out["errors"].([]any)
			if len(errs) == 0 {
				t.Fatalf("no errors: %v", out)
			}
			e, _ := errs[0].(map[string]any)
			if msg, _ := e["message"].(string); msg == "" {
				t.Errorf("errors[0] has no message: %v", e)
			}
			lines := strings.Split(c.text, "\n")
			if e["line"] != float64(c.line) {
				t.Fatalf("errors[0].line = %v, want %d (%q): %v", e["line"], c.line, lines[c.line-1], e)
			}
			col, _ := e["column"].(float64)
			bad := lines[c.line-1]
			if col < 1 || int(col) > len(bad)+1 {
				t.Errorf("errors[0].column = %v, outside line %d %q", e["column"], c.line, bad)
			}
		})
	}
	// validate applies nothing
	if v := schemaVersion(h); v != 1 {
		t.Fatalf("version after validate = %d, want 1", v)
	}
}

// diffApp is a small app for diff tests.
const diffApp = `
definition document {
	relation owner: user
	relation viewer: user
	relation editor: user
	permission view = owner + viewer
}
`

func TestSchemaDiff(t *testing.T) {
	h := newHarness(t, diffApp)
	h.write(
		rel("document:d1", "owner", "user:alice"),
		rel("document:d1", "viewer", "user:alice"),
		rel("document:d1", "viewer", "user:bob"),
		rel("document:d1", "viewer", "user:carol"),
		rel("document:d2", "owner", "user:dave"),
		rel("document:d1", "editor", "user:erin"),
		rel("document:d2", "editor", "user:frank"),
	)
	diff := func(text string) map[string]any {
		t.Helper()
		return h.must(200, "POST", "/v1/schema/diff", map[string]any{"text": text})
	}

	t.Run("added, removed, changed", func(t *testing.T) {
		out := diff(`
definition document {
	relation owner: user
	relation viewer: user
	relation commenter: user
	permission view = owner + viewer + commenter
}
`)
		cs := diffChanges(t, out)
		for _, want := range []change{
			{"added-relation", "document", "commenter"},
			{"removed-relation", "document", "editor"},
			{"changed-permission-implementation", "document", "view"},
		} {
			if !hasChange(cs, want) {
				t.Errorf("changes %v lack %v", cs, want)
			}
		}
		if len(cs) != 3 {
			t.Errorf("changes = %v, want exactly 3", cs)
		}
		im := impactOf(t, out)
		if im["relationshipsOrphaned"] != float64(2) {
			t.Errorf("relationshipsOrphaned = %v, want 2 (the editor relationships)", im["relationshipsOrphaned"])
		}
	})

	t.Run("no change", func(t *testing.T) {
		out := diff(diffApp)
		if cs := diffChanges(t, out); len(cs) != 0 {
			t.Errorf("diff against the same text: %v", cs)
		}
		im := impactOf(t, out)
		want := map[string]any{"relationshipsOrphaned": float64(0), "subjectsGaining": float64(0), "subjectsLosing": float64(0), "samples": []any{}}
		if !reflect.DeepEqual(im, want) {
			t.Errorf("impact = %v, want %v", im, want)
		}
	})

	t.Run("narrowing", func(t *testing.T) {
		out := diff(strings.Replace(diffApp, "permission view = owner + viewer", "permission view = owner", 1))
		cs := diffChanges(t, out)
		if !reflect.DeepEqual(cs, []change{{"changed-permission-implementation", "document", "view"}}) {
			t.Errorf("changes = %v, want only the view change", cs)
		}
		im := impactOf(t, out)
		// bob and carol lose view on d1; alice keeps it as owner, dave as owner of d2
		if im["subjectsLosing"] != float64(2) {
			t.Errorf("subjectsLosing = %v, want 2: %v", im["subjectsLosing"], im)
		}
		if im["subjectsGaining"] != float64(0) {
			t.Errorf("subjectsGaining = %v, want 0", im["subjectsGaining"])
		}
		if im["relationshipsOrphaned"] != float64(0) {
			t.Errorf("relationshipsOrphaned = %v, want 0", im["relationshipsOrphaned"])
		}
		samples, _ := im["samples"].([]any)
		if len(samples) == 0 {
			t.Fatalf("no samples: %v", im)
		}
		all := fmt.Sprint(samples...)
		for _, who := range []string{"bob", "carol"} {
			if !strings.Contains(all, who) {
				t.Errorf("samples %v do not mention %s", samples, who)
			}
		}
		if strings.Contains(all, "alice") || strings.Contains(all, "dave") {
			t.Errorf("samples %v mention a user who keeps access", samples)
		}
	})

	t.Run("widening", func(t *testing.T) {
		out := diff(strings.Replace(diffApp, "permission view = owner + viewer", "permission view = owner + viewer + editor", 1))
		im := impactOf(t, out)
		// erin gains view on d1, frank on d2
		if im["subjectsGaining"] != float64(2) || im["subjectsLosing"] != float64(0) {
			t.Errorf("impact = %v, want 2 gaining and 0 losing", im)
		}
	})

	// diff applies nothing
	got := schemaGet(h)
	if got["version"] != float64(1) || got["appText"] != diffApp {
		t.Fatalf("after diffs: version %v appText %q, want 1 and diffApp", got["version"], got["appText"])
	}
	if p := h.check("document:d1", "view", "user:bob"); p != "HAS_PERMISSION" {
		t.Fatalf("bob view after diffs = %s, want HAS_PERMISSION", p)
	}
	if p := h.check("document:d1", "view", "user:erin"); p != "NO_PERMISSION" {
		t.Fatalf("erin view after diffs = %s, want NO_PERMISSION", p)
	}
	// a diff with a syntax error is bad input naming text
	mustProblem(h, 400, "invalid_argument", "text", "POST", "/v1/schema/diff", map[string]any{"text": "definition document {"})
}

// TestSchemaChangeWithCaveat changes (PUT) and diffs an app schema that keeps a
// caveat, as docApp's ip_allowed.
func TestSchemaChangeWithCaveat(t *testing.T) {
	h := newHarness(t, docApp)
	next := docApp + "\ndefinition tag {}\n"
	code, out := h.call("POST", "/v1/schema/diff", map[string]any{"text": next})
	if code != 200 {
		t.Fatalf("diff: status %d: %v", code, out)
	}
	if cs := diffChanges(t, out); !reflect.DeepEqual(cs, []change{{"definition-added", "tag", ""}}) {
		t.Errorf("diff changes = %v, want only tag added", cs)
	}
	if out := h.must(200, "PUT", "/v1/schema", map[string]any{"text": next}); out["version"] != float64(2) {
		t.Fatalf("PUT: version = %v, want 2", out["version"])
	}
	// the caveat still works after the change
	r := rel("document:c", "viewer", "user:carol")
	r["caveat"] = map[string]any{"name": "ip_allowed", "context": map[string]any{"cidr": "10.0.0.0/8"}}
	h.write(r)
	got := h.must(200, "POST", "/v1/check", map[string]any{"resource": "document:c", "permission": "view", "subject": "user:carol", "context": map[string]any{"ip": "10.0.0.1"}})
	if got["permissionship"] != "HAS_PERMISSION" {
		t.Errorf("caveated check after PUT: %v", got)
	}
}
