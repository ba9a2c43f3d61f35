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

// TestCheckContextNumbers: numbers in a caveat context keep their value:
// integers exact (beyond float64's 2^53), fractions as float64, at any depth.
func TestCheckContextNumbers(t *testing.T) {
	var in checkJSON
	body := `{"resource":"document:d1","permission":"view","subject":"user:ann",
		"context":{"n":9007199254740993,"f":1.5,"nested":{"k":[1,2.5]}}}`
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	req, err := in.parse()
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := req.Context["n"].(int64); !ok || n != 9007199254740993 {
		t.Errorf("n = %#v, want int64 9007199254740993", req.Context["n"])
	}
	if f, ok := req.Context["f"].(float64); !ok || f != 1.5 {
		t.Errorf("f = %#v, want 1.5", req.Context["f"])
	}
	k := req.Context["nested"].(map[string]any)["k"].([]any)
	if i, ok := k[0].(int64); !ok || i != 1 || k[1] != 2.5 {
		t.Errorf("nested.k = %#v, want [int64(1) 2.5]", k)
	}
}
