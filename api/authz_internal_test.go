package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestCheckResultJSON: the hand-written encoding of a check answer is byte for
// byte what encoding/json writes, and anything it cannot write verbatim is left
// to encoding/json.
func TestCheckResultJSON(t *testing.T) {
	verbatim := []checkResultJSON{
		{Allowed: true, Permissionship: "HAS_PERMISSION", CheckedAt: "GhUKEzE3NjM5MTk2NzgwMDAwMDAwMDA=", Cached: true},
		{Permissionship: "NO_PERMISSION", CheckedAt: "t-42|x_y/z+=~ !#$%'()*,.:;?@[]^`{}"},
		{Permissionship: "CONDITIONAL_PERMISSION"},
	}
	for _, r := range verbatim {
		got, ok := r.appendJSON(nil)
		if !ok {
			t.Fatalf("%+v: not encoded by hand", r)
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("hand-written %s\nencoding/json %s", got, want.Bytes())
		}
	}
	for _, r := range []checkResultJSON{
		{Permissionship: "CONDITIONAL_PERMISSION", MissingContext: []string{"ip"}, CheckedAt: "t"},
		{Permissionship: "HAS_PERMISSION", CheckedAt: `a"b`},
		{Permissionship: "HAS_PERMISSION", CheckedAt: `a\b`},
		{Permissionship: "HAS_PERMISSION", CheckedAt: "a<b"},
		{Permissionship: "HAS_PERMISSION", CheckedAt: "a>b"},
		{Permissionship: "HAS_PERMISSION", CheckedAt: "a&b"},
		{Permissionship: "HAS_PERMISSION", CheckedAt: "é"},
		{Permissionship: "HAS_PERMISSION", CheckedAt: "a\nb"},
		{Permissionship: "HAS\x7fPERMISSION"},
	} {
		if got, ok := r.appendJSON(nil); ok {
			t.Errorf("%+v encoded by hand as %s; encoding/json escapes it", r, got)
		}
	}
}
