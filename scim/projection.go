package scim

import (
	"net/http"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// proj is an attributes / excludedAttributes projection (RFC 7644 §3.4.2.5).
// id, schemas and meta are always returned.
type proj struct {
	include, exclude []filter.AttributePath
}

func projection(attributes, excluded string) (proj, error) {
	var p proj
	if attributes != "" && excluded != "" {
		return p, errorf(http.StatusBadRequest, "invalidValue", "give attributes or excludedAttributes, not both")
	}
	parse := func(list string) ([]filter.AttributePath, error) {
		var out []filter.AttributePath
		for _, a := range strings.Split(list, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			pp, err := parsePath(a)
			if err != nil || pp.ValueExpression != nil {
				return nil, errorf(http.StatusBadRequest, "invalidValue", "%q is not an attribute path", a)
			}
			out = append(out, pp.AttributePath)
		}
		return out, nil
	}
	var err error
	if p.include, err = parse(attributes); err != nil {
		return p, err
	}
	p.exclude, err = parse(excluded)
	return p, err
}

func (p proj) apply(doc map[string]any) map[string]any {
	if len(p.include) == 0 && len(p.exclude) == 0 {
		return doc
	}
	if len(p.exclude) > 0 {
		out := deepCopy(doc).(map[string]any)
		for _, a := range p.exclude {
			if alwaysReturned(a.AttributeName) && a.URI() == "" {
				continue
			}
			c, _ := container(out, a.URI(), false)
			if c == nil {
				continue
			}
			key, v, ok := lookup(c, a.AttributeName)
			if !ok {
				continue
			}
			if sub := a.SubAttributeName(); sub != "" {
				if m, ok := v.(map[string]any); ok {
					if sk, _, ok := lookup(m, sub); ok {
						delete(m, sk)
					}
				}
				continue
			}
			delete(c, key)
		}
		return out
	}
	out := map[string]any{"id": doc["id"], "schemas": doc["schemas"], "meta": doc["meta"]}
	for _, a := range p.include {
		src, _ := container(doc, a.URI(), false)
		if src == nil {
			continue
		}
		key, v, ok := lookup(src, a.AttributeName)
		if !ok {
			continue
		}
		dst := out
		if a.URI() != "" && !strings.EqualFold(a.URI(), schemaUser) && !strings.EqualFold(a.URI(), schemaGroup) {
			ext, _ := out[schemaEnterprise].(map[string]any)
			if ext == nil {
				ext = map[string]any{}
				out[schemaEnterprise] = ext
			}
			dst = ext
		}
		sub := a.SubAttributeName()
		if sub == "" {
			dst[key] = v
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if sk, sv, ok := lookup(m, sub); ok {
			part, _ := dst[key].(map[string]any)
			if part == nil {
				part = map[string]any{}
				dst[key] = part
			}
			part[sk] = sv
		}
	}
	return out
}

// nameEquality recognizes userName eq "…" (users) or displayName eq "…" (groups).
func nameEquality(k kind, expr any) (string, bool) {
	x, ok := expr.(*filter.AttributeExpression)
	if !ok || x.Operator != filter.EQ || x.AttributePath.SubAttribute != nil {
		return "", false
	}
	if u := x.AttributePath.URI(); u != "" && !strings.EqualFold(u, k.schema) {
		return "", false
	}
	want := "userName"
	if k.name == "Group" {
		want = "displayName"
	}
	v, ok := x.CompareValue.(string)
	return v, ok && strings.EqualFold(x.AttributePath.AttributeName, want)
}

// alwaysReturned: id, schemas and meta come back whatever the projection
// (RFC 7643 §7 "returned": "always"); groups is read-only but returned by
// default, so it may be excluded.
func alwaysReturned(name string) bool {
	return strings.EqualFold(name, "id") || strings.EqualFold(name, "meta") || strings.EqualFold(name, "schemas")
}

// wants reports whether the projection returns the core attribute name.
func (p proj) wants(name string) bool {
	matches := func(list []filter.AttributePath) bool {
		for _, a := range list {
			if strings.EqualFold(a.AttributeName, name) && (a.URI() == "" || strings.EqualFold(a.URI(), schemaUser)) {
				return true
			}
		}
		return false
	}
	if len(p.include) > 0 {
		return matches(p.include)
	}
	return !matches(p.exclude)
}
