package scim

import (
	"fmt"
	"net/http"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// maxFilterLen bounds a filter or PATCH path before it is parsed.
const maxFilterLen = 4096

// parseFilter parses a filter with the library; every failure is invalidFilter.
func parseFilter(raw string) (expr filter.Expression, err error) {
	if len(raw) > maxFilterLen {
		return nil, errorf(http.StatusBadRequest, "invalidFilter", "filter is longer than %d characters", maxFilterLen)
	}
	defer func() { // the parser is third-party input handling: a panic is a bad filter, not a 500
		if r := recover(); r != nil {
			expr, err = nil, errorf(http.StatusBadRequest, "invalidFilter", "filter %q cannot be parsed", raw)
		}
	}()
	e, perr := filter.ParseFilter([]byte(raw))
	if perr != nil || e == nil {
		return nil, errorf(http.StatusBadRequest, "invalidFilter", "filter %q cannot be parsed", raw)
	}
	return e, checkFilter(e)
}

// checkFilter refuses comparisons that cannot apply, whatever the data:
// ordering or substring operators on booleans or null.
func checkFilter(e filter.Expression) error {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if err := checkFilter(x.Left); err != nil {
			return err
		}
		return checkFilter(x.Right)
	case *filter.NotExpression:
		return checkFilter(x.Expression)
	case *filter.ValuePath:
		return checkFilter(x.ValueFilter)
	case *filter.AttributeExpression:
		switch x.CompareValue.(type) {
		case bool, nil:
			if x.Operator != filter.EQ && x.Operator != filter.NE && x.Operator != filter.PR {
				return errorf(http.StatusBadRequest, "invalidFilter", "operator %s does not apply to %v", x.Operator, x.CompareValue)
			}
		}
		return nil
	case nil:
		return errorf(http.StatusBadRequest, "invalidFilter", "empty filter expression")
	}
	return nil
}

// parsePath parses a PATCH path; every failure is invalidPath.
func parsePath(raw string) (p filter.Path, err error) {
	if len(raw) > maxFilterLen {
		return p, errorf(http.StatusBadRequest, "invalidPath", "path is longer than %d characters", maxFilterLen)
	}
	defer func() {
		if r := recover(); r != nil {
			err = errorf(http.StatusBadRequest, "invalidPath", "path %q cannot be parsed", raw)
		}
	}()
	p, perr := filter.ParsePath([]byte(raw))
	if perr != nil {
		return p, errorf(http.StatusBadRequest, "invalidPath", "path %q cannot be parsed", raw)
	}
	return p, nil
}

// container returns the object an attribute path's URI prefix points into:
// the resource itself, or its enterprise extension (created when create is set).
func container(res map[string]any, uri string, create bool) (map[string]any, error) {
	switch {
	case uri == "" || strings.EqualFold(uri, schemaUser) || strings.EqualFold(uri, schemaGroup):
		return res, nil
	case strings.EqualFold(uri, schemaEnterprise):
		ext, ok := res[schemaEnterprise].(map[string]any)
		if !ok && create {
			ext = map[string]any{}
			res[schemaEnterprise] = ext
		}
		return ext, nil
	}
	return nil, errorf(http.StatusBadRequest, "invalidPath", "unknown schema %q", uri)
}

// lookup finds a key case-insensitively.
func lookup(m map[string]any, name string) (string, any, bool) {
	if v, ok := m[name]; ok {
		return name, v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return k, v, true
		}
	}
	return "", nil, false
}

// values lists the values an attribute path names in res: for a
// multi-valued complex attribute without a sub-attribute, its "value"s.
func values(res map[string]any, p filter.AttributePath) ([]any, error) {
	c, err := container(res, p.URI(), false)
	if err != nil || c == nil {
		return nil, err
	}
	_, v, ok := lookup(c, p.AttributeName)
	if !ok {
		return nil, nil
	}
	sub := p.SubAttributeName()
	var out []any
	add := func(x any) {
		if m, ok := x.(map[string]any); ok {
			key := sub
			if key == "" {
				key = "value"
			}
			if _, sv, ok := lookup(m, key); ok {
				out = append(out, sv)
			}
			return
		}
		if sub == "" {
			out = append(out, x)
		}
	}
	if list, ok := v.([]any); ok {
		for _, x := range list {
			add(x)
		}
	} else {
		add(v)
	}
	return out, nil
}

// match evaluates a filter on a resource (or a multi-valued attribute's element).
func match(e filter.Expression, res map[string]any) (bool, error) {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		l, err := match(x.Left, res)
		if err != nil {
			return false, err
		}
		if x.Operator == filter.AND && !l || x.Operator == filter.OR && l {
			return l, nil
		}
		return match(x.Right, res)
	case *filter.NotExpression:
		ok, err := match(x.Expression, res)
		return !ok, err
	case *filter.ValuePath:
		c, err := container(res, x.AttributePath.URI(), false)
		if err != nil || c == nil {
			return false, err
		}
		_, v, _ := lookup(c, x.AttributePath.AttributeName)
		list, _ := v.([]any)
		for _, el := range list {
			m, ok := el.(map[string]any)
			if !ok {
				continue
			}
			if ok, err := match(x.ValueFilter, m); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case *filter.AttributeExpression:
		vs, err := values(res, x.AttributePath)
		if err != nil {
			return false, err
		}
		if x.Operator == filter.PR {
			for _, v := range vs {
				if v != nil && v != "" {
					return true, nil
				}
			}
			return false, nil
		}
		for _, v := range vs {
			ok, err := compare(x.Operator, v, x.CompareValue)
			if err != nil || ok {
				return ok, err
			}
		}
		return x.Operator == filter.NE && len(vs) == 0, nil
	}
	return false, errorf(http.StatusBadRequest, "invalidFilter", "unsupported filter expression")
}

// compare applies op to a stored value and a filter's literal. Strings
// compare case-insensitively (caseExact is false for the attributes served).
func compare(op filter.CompareOperator, have, want any) (bool, error) {
	switch w := want.(type) {
	case string:
		h, ok := have.(string)
		if !ok {
			return op == filter.NE, nil
		}
		h, w = strings.ToLower(h), strings.ToLower(w)
		switch op {
		case filter.EQ:
			return h == w, nil
		case filter.NE:
			return h != w, nil
		case filter.CO:
			return strings.Contains(h, w), nil
		case filter.SW:
			return strings.HasPrefix(h, w), nil
		case filter.EW:
			return strings.HasSuffix(h, w), nil
		case filter.GT:
			return h > w, nil
		case filter.GE:
			return h >= w, nil
		case filter.LT:
			return h < w, nil
		case filter.LE:
			return h <= w, nil
		}
	case bool:
		h, ok := have.(bool)
		switch op {
		case filter.EQ:
			return ok && h == w, nil
		case filter.NE:
			return !ok || h != w, nil
		}
		return false, errorf(http.StatusBadRequest, "invalidFilter", "operator %s does not apply to booleans", op)
	case nil:
		switch op {
		case filter.EQ:
			return have == nil, nil
		case filter.NE:
			return have != nil, nil
		}
		return false, errorf(http.StatusBadRequest, "invalidFilter", "operator %s does not apply to null", op)
	case int, float64:
		return false, nil // no numeric attributes are served
	}
	return false, errorf(http.StatusBadRequest, "invalidFilter", "operator %s or value %v is not supported", op, fmt.Sprint(want))
}
