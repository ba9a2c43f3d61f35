package scim

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzFilterAndPath: filters and PATCH paths from the network never panic,
// and every refusal is a SCIM 400 of the right type.
func FuzzFilterAndPath(f *testing.F) {
	for _, s := range []string{
		`userName eq "bjensen"`, `emails[type eq "work" and value co "@example.com"]`, `not (title pr)`,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`, `members[value eq "x"].display`, `name.givenName`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, `((`, `a eq`, `[`, `x eq 1.5e400`,
	} {
		f.Add(s)
	}
	doc := map[string]any{"userName": "b", "emails": []any{map[string]any{"type": "work", "value": "b@x.example"}},
		"name": map[string]any{"givenName": "B"}, schemaEnterprise: map[string]any{"department": "D"}}
	f.Fuzz(func(t *testing.T, raw string) {
		if e, err := parseFilter(raw); err != nil {
			wantSCIM(t, err, "invalidFilter")
		} else if _, err := match(e, doc); err != nil {
			wantSCIM(t, err, "invalidFilter")
		}
		for _, o := range []string{"add", "replace", "remove"} {
			out, err := users.applyPatch(doc, []patchOp{{Op: o, Path: raw, Value: "v"}})
			if err != nil {
				var se *Error
				if !errors.As(err, &se) || se.Status != 400 {
					t.Fatalf("%s %q: %v, want a SCIM 400", o, raw, err)
				}
				continue
			}
			if _, err := users.normalize(out); err != nil {
				wantSCIM(t, err, "invalidValue")
			}
		}
	})
}

func wantSCIM(t *testing.T, err error, scimType string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Status != 400 || se.ScimType != scimType {
		t.Fatalf("%v: want a SCIM 400 %s", err, scimType)
	}
}

func TestPatchEntraAndOkta(t *testing.T) {
	base := map[string]any{"userName": "a@x.example", "active": true,
		"emails":  []any{map[string]any{"type": "work", "value": "a@x.example", "primary": true}},
		"members": []any{map[string]any{"value": "usr_1"}, map[string]any{"value": "usr_2"}}}
	cases := []struct {
		name string
		k    kind
		ops  []patchOp
		want func(m map[string]any) any
		is   any
	}{
		{"Entra filtered sub-attribute", users, []patchOp{{Op: "replace", Path: `emails[type eq "work"].value`, Value: "b@x.example"}},
			func(m map[string]any) any { return m["emails"].([]any)[0].(map[string]any)["value"] }, "b@x.example"},
		{"Entra filter with no match adds", users, []patchOp{{Op: "add", Path: `emails[type eq "home"].value`, Value: "h@x.example"}},
			func(m map[string]any) any { return len(m["emails"].([]any)) }, 2},
		{"Entra string boolean", users, []patchOp{{Op: "replace", Path: "active", Value: "False"}},
			func(m map[string]any) any { n, _ := users.normalize(m); return n["active"] }, false},
		{"Entra value map with a dotted key", users, []patchOp{{Op: "replace", Value: map[string]any{"name.givenName": "G", "userName": "c@x.example"}}},
			func(m map[string]any) any {
				return m["name"].(map[string]any)["givenName"].(string) + m["userName"].(string)
			}, "Gc@x.example"},
		{"Entra remove member by filter", groups, []patchOp{{Op: "remove", Path: `members[value eq "usr_1"]`}},
			func(m map[string]any) any { return m["members"] }, []any{map[string]any{"value": "usr_2"}}},
		{"Entra remove members by value", groups, []patchOp{{Op: "remove", Path: "members", Value: []any{map[string]any{"value": "usr_2"}}}},
			func(m map[string]any) any { return m["members"] }, []any{map[string]any{"value": "usr_1"}}},
		{"add members dedupes", groups, []patchOp{{Op: "add", Path: "members", Value: []any{map[string]any{"value": "usr_1"}, map[string]any{"value": "usr_3"}}}},
			func(m map[string]any) any { return len(m["members"].([]any)) }, 3},
		{"Okta replace ignores id", groups, []patchOp{{Op: "replace", Value: map[string]any{"id": "grp_x", "displayName": "N"}}},
			func(m map[string]any) any { return []any{m["displayName"], m["id"]} }, []any{"N", nil}},
		{"enterprise path", users, []patchOp{{Op: "add", Path: schemaEnterprise + ":department", Value: "D"}},
			func(m map[string]any) any { return m[schemaEnterprise].(map[string]any)["department"] }, "D"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.k.applyPatch(base, c.ops)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.want(out); !reflect.DeepEqual(got, c.is) {
				raw, _ := json.Marshal(out)
				t.Fatalf("got %v, want %v (%s)", got, c.is, raw)
			}
		})
	}
	// the base is never changed in place
	if len(base["members"].([]any)) != 2 {
		t.Fatal("applyPatch changed its input")
	}
}
