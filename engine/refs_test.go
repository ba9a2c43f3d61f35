package engine

import (
	"strings"
	"testing"
)

func TestParseRefs(t *testing.T) {
	good := map[string]SubjectRef{
		"user:ann":                 {Object: ObjectRef{"user", "ann"}},
		"group:eng#member":         {Object: ObjectRef{"group", "eng"}, Relation: "member"},
		"user:*":                   {Object: ObjectRef{"user", "*"}},
		"app/document:a|b=c+d_e-f": {Object: ObjectRef{"app/document", "a|b=c+d_e-f"}},
	}
	for in, want := range good {
		got, err := ParseSubjectRef("subject", in)
		if err != nil || got != want {
			t.Errorf("ParseSubjectRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "user", "user:", ":ann", "user:ann#", "us:ann", "User:ann", "user:a n", "user:*#member", "user:" + strings.Repeat("a", 1025), "user:ann#x"} {
		if _, err := ParseSubjectRef("subject", in); err == nil {
			t.Errorf("ParseSubjectRef(%q) accepted", in)
		} else if !strings.HasPrefix(err.Error(), "subject: ") {
			t.Errorf("error %q does not name the field", err)
		}
	}
	if _, err := ParseObjectRef("resource", "document:*"); err == nil {
		t.Error("a wildcard resource was accepted")
	}
}

// FuzzParseSubjectRef: the parser never panics, and what it accepts round-trips.
func FuzzParseSubjectRef(f *testing.F) {
	for _, s := range []string{"user:ann", "group:eng#member", "user:*", "a:b#c", "app/doc:x", ":", "#", "user:ann#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseSubjectRef("subject", s)
		if err != nil {
			return
		}
		if ref.String() != s {
			t.Fatalf("accepted %q but it renders as %q", s, ref.String())
		}
		if _, err := ParseSubjectRef("subject", ref.String()); err != nil {
			t.Fatalf("rendered form %q no longer parses: %v", ref.String(), err)
		}
	})
}
