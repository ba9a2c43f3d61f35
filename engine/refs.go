package engine

import (
	"strings"

	"github.com/trellis-iam/trellis"
)

// Limits and shapes follow SpiceDB's own validation, so anything SpiceDB accepts is accepted here.
const maxObjectIDLength = 1024

// The names below follow SpiceDB's patterns (kept as regexps in refs_test.go, which
// checks these scanners against them): a name segment is [a-z][a-z0-9_]{1,62}[a-z0-9]
// (3 to 64 characters), a type is an optional "prefix/" of such segments (each at most
// 63 characters) before one, an object id is [a-zA-Z0-9/_|\-=+]+. They are scanned by
// hand because they run on every check request.

// nameSegment reports whether s is one name segment of at most max characters.
func nameSegment(s string, max int) bool {
	if len(s) < 3 || len(s) > max || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	last := s[len(s)-1]
	return last >= 'a' && last <= 'z' || last >= '0' && last <= '9'
}

func validTypeName(typ string) bool {
	for {
		seg, rest, more := strings.Cut(typ, "/")
		if !more {
			return nameSegment(seg, 64)
		}
		if !nameSegment(seg, 63) {
			return false
		}
		typ = rest
	}
}

func validRelationName(rel string) bool { return nameSegment(rel, 64) }

func validIDChars(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '/', c == '_', c == '|', c == '-', c == '=', c == '+':
		default:
			return false
		}
	}
	return true
}

// ObjectRef names one object: "type:id".
type ObjectRef struct {
	Type string
	ID   string
}

func (o ObjectRef) String() string { return o.Type + ":" + o.ID }

// SubjectRef is an object, a subject set ("type:id#relation") or a wildcard ("type:*").
type SubjectRef struct {
	Object   ObjectRef
	Relation string // empty for a plain object
}

func (s SubjectRef) String() string {
	if s.Relation == "" {
		return s.Object.String()
	}
	return s.Object.String() + "#" + s.Relation
}

// IsWildcard reports whether the subject is "type:*".
func (s SubjectRef) IsWildcard() bool { return s.Object.ID == "*" }

// ParseObjectRef parses "type:id"; field names the request field for errors.
func ParseObjectRef(field, s string) (ObjectRef, error) {
	if s == "" {
		return ObjectRef{}, trellis.Invalid(field, "is required (form type:id)")
	}
	typ, id, ok := strings.Cut(s, ":")
	if !ok {
		return ObjectRef{}, trellis.Invalid(field, "%q is not of the form type:id", s)
	}
	if err := ValidateType(field, typ); err != nil {
		return ObjectRef{}, err
	}
	if id == "*" {
		return ObjectRef{}, trellis.Invalid(field, "a wildcard is not allowed here")
	}
	if err := validateID(field, id); err != nil {
		return ObjectRef{}, err
	}
	return ObjectRef{Type: typ, ID: id}, nil
}

// ParseSubjectRef parses "type:id", "type:id#relation" or "type:*".
func ParseSubjectRef(field, s string) (SubjectRef, error) {
	if s == "" {
		return SubjectRef{}, trellis.Invalid(field, "is required (form type:id or type:id#relation)")
	}
	obj, rel, hasRel := strings.Cut(s, "#")
	typ, id, ok := strings.Cut(obj, ":")
	if !ok {
		return SubjectRef{}, trellis.Invalid(field, "%q is not of the form type:id", s)
	}
	if err := ValidateType(field, typ); err != nil {
		return SubjectRef{}, err
	}
	if id != "*" {
		if err := validateID(field, id); err != nil {
			return SubjectRef{}, err
		}
	}
	if hasRel {
		if id == "*" {
			return SubjectRef{}, trellis.Invalid(field, "a wildcard subject cannot carry a relation")
		}
		if err := ValidateRelation(field, rel); err != nil {
			return SubjectRef{}, err
		}
	}
	return SubjectRef{Object: ObjectRef{Type: typ, ID: id}, Relation: rel}, nil
}

// ValidateType checks an object type name, optionally namespaced ("app/document").
func ValidateType(field, typ string) error {
	if !validTypeName(typ) {
		return trellis.Invalid(field, "object type %q is not valid (lowercase letters, digits and _, 3 to 64 characters, optional prefix/)", typ)
	}
	return nil
}

// ValidateRelation checks a relation or permission name.
func ValidateRelation(field, rel string) error {
	if !validRelationName(rel) {
		return trellis.Invalid(field, "relation or permission %q is not valid (lowercase letters, digits and _, 3 to 64 characters)", rel)
	}
	return nil
}

func validateID(field, id string) error {
	switch {
	case id == "":
		return trellis.Invalid(field, "object id is empty")
	case len(id) > maxObjectIDLength:
		return trellis.Invalid(field, "object id is longer than %d characters", maxObjectIDLength)
	case !validIDChars(id):
		return trellis.Invalid(field, "object id %q has characters outside a-z A-Z 0-9 / _ | - = +", id)
	}
	return nil
}

// maxCaveatNameLength is the longest caveat name SpiceDB's API accepts.
const maxCaveatNameLength = 128

// ValidateCaveatName checks a caveat name as SpiceDB's API does
// (ContextualizedCaveat.caveat_name: ^[a-zA-Z0-9_][a-zA-Z0-9/_|-]{0,127}$),
// so a prefixed name such as "app/ip_allowed" is accepted.
func ValidateCaveatName(field, name string) error {
	if !validCaveatName(name) {
		return trellis.Invalid(field, "caveat name %q is not valid (letters, digits, _, /, | and -, not starting with /, | or -, at most %d characters)", name, maxCaveatNameLength)
	}
	return nil
}

func validCaveatName(name string) bool {
	if name == "" || len(name) > maxCaveatNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case i > 0 && (c == '/' || c == '|' || c == '-'):
		default:
			return false
		}
	}
	return true
}
