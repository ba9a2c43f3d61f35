package api_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authzed/spicedb/pkg/tuple"
	"github.com/authzed/spicedb/pkg/validationfile"
	"github.com/authzed/spicedb/pkg/validationfile/blocks"
)

// TestScenarios runs every testdata/scenarios file (SpiceDB validation-file
// shape) through the HTTP API of a running server: PUT the app schema, write
// the relationships, then check every assertion.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("../testdata/scenarios/*.yaml")
	if err != nil || len(files) < 15 {
		t.Fatalf("want at least 15 scenario files, found %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vf, err := validationfile.DecodeValidationFile(raw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			h := newHarness(t, "")
			h.must(200, "PUT", "/v1/schema", map[string]any{"text": vf.Schema.Schema})
			var updates []map[string]any
			for _, r := range vf.Relationships.Relationships {
				updates = append(updates, map[string]any{"operation": "touch", "relationship": relationshipJSON(r)})
			}
			if len(updates) > 0 {
				h.writeUpdates(updates...) // system relations go to the engine: the raw-write API refuses them
			}
			a := vf.Assertions
			if n := len(a.AssertTrue) + len(a.AssertFalse) + len(a.AssertCaveated); n == 0 {
				t.Fatal("scenario has no assertions")
			}
			run := func(list []blocks.Assertion, want string) {
				for _, as := range list {
					r := as.Relationship
					body := map[string]any{
						"resource":    r.Resource.ObjectType + ":" + r.Resource.ObjectID,
						"permission":  r.Resource.Relation,
						"subject":     subjectString(r.Subject),
						"consistency": map[string]any{"fullyConsistent": true},
					}
					if as.CaveatContext != nil {
						body["context"] = as.CaveatContext
					}
					out := h.must(200, "POST", "/v1/check", body)
					if got := out["permissionship"]; got != want {
						t.Errorf("%s: permissionship %v, want %s", as.RelationshipWithContextString, got, want)
					}
				}
			}
			run(a.AssertTrue, "HAS_PERMISSION")
			run(a.AssertFalse, "NO_PERMISSION")
			run(a.AssertCaveated, "CONDITIONAL")
		})
	}
}

func subjectString(s tuple.ObjectAndRelation) string {
	out := s.ObjectType + ":" + s.ObjectID
	if s.Relation != "" && s.Relation != tuple.Ellipsis {
		out += "#" + s.Relation
	}
	return out
}

// relationshipJSON renders a parsed relationship as the API's JSON.
func relationshipJSON(r tuple.Relationship) map[string]any {
	out := map[string]any{
		"resource": r.Resource.ObjectType + ":" + r.Resource.ObjectID,
		"relation": r.Resource.Relation,
		"subject":  subjectString(r.Subject),
	}
	if c := r.OptionalCaveat; c != nil {
		cav := map[string]any{"name": c.CaveatName}
		if c.Context != nil && len(c.Context.Fields) > 0 {
			cav["context"] = c.Context.AsMap()
		}
		out["caveat"] = cav
	}
	if r.OptionalExpiration != nil {
		out["expiresAt"] = r.OptionalExpiration.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	return out
}
