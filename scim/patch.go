package scim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchOp is one PATCH operation (RFC 7644 §3.5.2). Entra ID sends op in
// capitals ("Replace"), Okta in lower case: both are accepted.
type patchOp struct {
	Op    string
	Path  string
	Value any
}

// maxPatchOps bounds the operations of one PATCH.
const maxPatchOps = 1000

// decodePatch reads a PatchOp message.
func decodePatch(body map[string]any) ([]patchOp, error) {
	_, raw, ok := lookup(body, "Operations")
	list, isList := raw.([]any)
	if !ok || !isList {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "a PatchOp needs an Operations list")
	}
	if len(list) > maxPatchOps {
		return nil, errorf(http.StatusBadRequest, "tooMany", "at most %d operations per PATCH", maxPatchOps)
	}
	ops := make([]patchOp, 0, len(list))
	for i, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "Operations[%d] must be an object", i)
		}
		var o patchOp
		_, op, _ := lookup(m, "op")
		o.Op, _ = op.(string)
		o.Op = strings.ToLower(o.Op)
		if o.Op != "add" && o.Op != "replace" && o.Op != "remove" {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "Operations[%d].op must be add, replace or remove, got %v", i, op)
		}
		_, path, _ := lookup(m, "path")
		if path != nil {
			if o.Path, ok = path.(string); !ok {
				return nil, errorf(http.StatusBadRequest, "invalidPath", "Operations[%d].path must be a string", i)
			}
		}
		_, o.Value, _ = lookup(m, "value")
		if o.Op != "remove" && o.Value == nil {
			return nil, errorf(http.StatusBadRequest, "invalidValue", "Operations[%d] (%s) needs a value", i, o.Op)
		}
		ops = append(ops, o)
	}
	return ops, nil
}

// applyPatch applies ops to a copy of doc (the stored representation) and
// returns it; the caller normalizes the result as it would a PUT body.
func (k kind) applyPatch(doc map[string]any, ops []patchOp) (map[string]any, error) {
	out := deepCopy(doc).(map[string]any)
	for _, o := range ops {
		if err := k.apply(out, o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (k kind) apply(doc map[string]any, o patchOp) error {
	if o.Path == "" {
		if o.Op == "remove" {
			return errorf(http.StatusBadRequest, "noTarget", "remove needs a path")
		}
		m, ok := o.Value.(map[string]any)
		if !ok {
			return errorf(http.StatusBadRequest, "invalidValue", "%s without a path needs an object value", o.Op)
		}
		// a value map: each key is an attribute, or a path (Entra ID sends
		// "name.givenName" and extension URNs as keys)
		for key, v := range m {
			if isReadOnly(key) {
				continue // ignored, as in a PUT body (Okta sends the id back)
			}
			if strings.EqualFold(key, schemaEnterprise) {
				if ext, ok := v.(map[string]any); ok {
					for ek, ev := range ext {
						if err := k.apply(doc, patchOp{Op: o.Op, Path: schemaEnterprise + ":" + ek, Value: ev}); err != nil {
							return err
						}
					}
					continue
				}
			}
			if err := k.apply(doc, patchOp{Op: o.Op, Path: key, Value: v}); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := parsePath(o.Path)
	if err != nil {
		return err
	}
	if p.AttributePath.URI() == "" && isReadOnly(p.AttributePath.AttributeName) {
		return errorf(http.StatusBadRequest, "mutability", "%s is read-only", p.AttributePath.AttributeName)
	}
	c, err := container(doc, p.AttributePath.URI(), o.Op != "remove")
	if err != nil {
		return err
	}
	if c == nil {
		return nil // removing from an extension that is not there
	}
	name := p.AttributePath.AttributeName
	if key, _, ok := lookup(c, name); ok {
		name = key
	} else if a, ok := find(k.attrsFor(p.AttributePath.URI()), name); ok {
		name = a.name
	}
	sub := p.AttributePath.SubAttributeName()
	if p.ValueExpression != nil {
		return applyFiltered(c, name, p.ValueExpression, p.SubAttributeName(), o)
	}
	a, known := find(k.attrsFor(p.AttributePath.URI()), name)
	switch {
	case sub != "": // name.givenName
		if o.Op == "remove" {
			if m, ok := c[name].(map[string]any); ok {
				if key, _, ok := lookup(m, sub); ok {
					delete(m, key)
				}
			}
			return nil
		}
		m, ok := c[name].(map[string]any)
		if !ok {
			if _, isList := c[name].([]any); isList {
				return errorf(http.StatusBadRequest, "invalidPath", "%s is multi-valued: name its values with a filter", name)
			}
			m = map[string]any{}
			c[name] = m
		}
		if key, _, ok := lookup(m, sub); ok {
			sub = key
		}
		m[sub] = o.Value
		return nil
	case o.Op == "remove":
		list, isList := c[name].([]any)
		if o.Value != nil && isList { // Entra ID: remove members listed in value
			drop := valuesOf(o.Value)
			c[name] = slices.DeleteFunc(list, func(el any) bool { return slices.Contains(drop, valueOf(el)) })
			return nil
		}
		delete(c, name)
		return nil
	case known && a.multi:
		add := o.Value
		if _, ok := add.([]any); !ok {
			add = []any{add}
		}
		if o.Op == "replace" {
			c[name] = add
			return nil
		}
		list, _ := c[name].([]any)
		for _, v := range add.([]any) {
			if id := valueOf(v); id != "" && slices.ContainsFunc(list, func(el any) bool { return valueOf(el) == id }) {
				continue
			}
			list = append(list, v)
		}
		c[name] = list
		return nil
	default:
		if have, ok := c[name].(map[string]any); ok && o.Op == "add" {
			if add, ok := o.Value.(map[string]any); ok {
				for k, v := range add {
					have[k] = v
				}
				return nil
			}
		}
		c[name] = o.Value
		return nil
	}
}

// applyFiltered applies o to the elements of c[name] that f selects
// (emails[type eq "work"].value, members[value eq "…"]).
func applyFiltered(c map[string]any, name string, f filter.Expression, sub string, o patchOp) error {
	list, _ := c[name].([]any)
	hit := false
	var kept []any
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			kept = append(kept, el)
			continue
		}
		ok, err := match(f, m)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, ScimType: "invalidPath", Detail: err.Error()}
		}
		if !ok {
			kept = append(kept, el)
			continue
		}
		hit = true
		switch {
		case o.Op == "remove" && sub == "":
			continue // the element goes
		case o.Op == "remove":
			if key, _, ok := lookup(m, sub); ok {
				delete(m, key)
			}
		case sub != "":
			if key, _, ok := lookup(m, sub); ok {
				sub = key
			}
			m[sub] = o.Value
		default:
			if v, ok := o.Value.(map[string]any); ok {
				for k, x := range v {
					m[k] = x
				}
			} else {
				return errorf(http.StatusBadRequest, "invalidValue", "%s of %s[…] needs an object value", o.Op, name)
			}
		}
		kept = append(kept, m)
	}
	if !hit && o.Op != "remove" {
		// nothing matched: add an element the filter describes (Entra ID
		// replaces emails[type eq "work"].value on a user without one)
		el := map[string]any{}
		if x, ok := f.(*filter.AttributeExpression); ok && x.Operator == filter.EQ {
			el[x.AttributePath.AttributeName] = x.CompareValue
		} else {
			return errorf(http.StatusBadRequest, "noTarget", "no %s value matches the path's filter", name)
		}
		if sub != "" {
			el[sub] = o.Value
		} else if v, ok := o.Value.(map[string]any); ok {
			for k, x := range v {
				el[k] = x
			}
		}
		kept = append(kept, el)
	}
	if kept == nil {
		delete(c, name)
		return nil
	}
	c[name] = kept
	return nil
}

func (k kind) attrsFor(uri string) []attr {
	if strings.EqualFold(uri, schemaEnterprise) {
		return enterpriseAttrs
	}
	return k.attrs
}

func isReadOnly(name string) bool {
	return slices.ContainsFunc(readOnlyAttrs, func(r string) bool { return strings.EqualFold(r, name) })
}

// valueOf is a multi-valued element's "value" ("" when it has none).
func valueOf(el any) string {
	if m, ok := el.(map[string]any); ok {
		_, v, _ := lookup(m, "value")
		s, _ := v.(string)
		return s
	}
	s, _ := el.(string)
	return s
}

func valuesOf(v any) []string {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var out []string
	for _, el := range list {
		out = append(out, valueOf(el))
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	case json.Number:
		return x.String()
	}
	return v
}
