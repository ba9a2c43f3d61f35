package engine

import (
	"math/rand/v2"
	"regexp"
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

// SpiceDB's name and id patterns, the oracle for the hand-written scanners in refs.go.
var (
	typeOracle     = regexp.MustCompile(`^([a-z][a-z0-9_]{1,61}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9]$`)
	idOracle       = regexp.MustCompile(`^[a-zA-Z0-9/_|\-=+]+$`)
	relationOracle = regexp.MustCompile(`^[a-z][a-z0-9_]{1,62}[a-z0-9]$`)
	// ContextualizedCaveat.caveat_name (authzed-go proto validation): prefixed names included
	caveatOracle = regexp.MustCompile(`^([a-zA-Z0-9_][a-zA-Z0-9/_|-]{0,127})$`)
)

// checkScanners compares the scanners with SpiceDB's patterns on one input.
func checkScanners(t *testing.T, s string) {
	t.Helper()
	for _, c := range []struct {
		name   string
		got    bool
		oracle *regexp.Regexp
	}{
		{"type", validTypeName(s), typeOracle},
		{"relation", validRelationName(s), relationOracle},
		{"id", validIDChars(s), idOracle},
		{"caveat", validCaveatName(s), caveatOracle},
	} {
		if want := c.oracle.MatchString(s); c.got != want {
			t.Fatalf("%s name %q: scanner says %v, SpiceDB's pattern %v", c.name, s, c.got, want)
		}
	}
}

// TestNameScannersMatchSpiceDBPatterns: boundary cases plus 200,000 random strings
// over the alphabet that matters (letters, digits, _, /, the id symbols, others).
func TestNameScannersMatchSpiceDBPatterns(t *testing.T) {
	seg := func(n int) string { return "a" + strings.Repeat("b", n-2) + "c" }
	for _, s := range []string{
		"", "a", "ab", "abc", "ab_", "a_c", "1bc", "Abc", "abC", "a-c", "/abc", "abc/", "abc//def", "abc/def", "ab/def", "abc/de",
		seg(63), seg(64), seg(65), seg(128), seg(129), "app/some_caveat", "_x", "-x", "|x", "a|b-c", seg(63) + "/" + seg(64), seg(64) + "/" + seg(64), seg(63) + "/" + seg(65), "x|y=z+w-v/u_t", "a b", "é", "abc\n",
	} {
		checkScanners(t, s)
	}
	r := rand.New(rand.NewPCG(7, 11))
	const alphabet = "abcz09_/AZ|-=+:#* é\n"
	for i := 0; i < 200_000; i++ {
		b := make([]byte, r.IntN(70))
		for j := range b {
			if r.IntN(4) == 0 {
				b[j] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[j] = byte('a' + r.IntN(26))
			}
		}
		checkScanners(t, string(b))
	}
}

// FuzzNameScanners: the scanners agree with SpiceDB's patterns on any input.
func FuzzNameScanners(f *testing.F) {
	for _, s := range []string{"user", "app/document", "member_of", "a|b", "ab", "x/"} {
		f.Add(s)
	}
	f.Fuzz(checkScanners)
}
