package schema

import (
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
)

// Restricting lists, as "type#relation", the relations of a schema whose
// relationships can take a permission away: those an exclusion subtracts
// (`permission view = viewer - banned`), directly or through the permissions,
// arrows and subject sets the subtracted side reaches. Adding one of their
// relationships can deny and deleting one can allow; every other relation
// only grants, since union and intersection are monotone. The list
// over-approximates: a relation reached on both sides (organization#lineage,
// which inherits administration and suspension) is in it.
func Restricting(text string) (map[string]bool, error) {
	cs, err := compile("schema", text)
	if err != nil {
		return nil, parseProblem(err)
	}
	defs := map[string]*core.NamespaceDefinition{}
	for _, d := range cs.ObjectDefinitions {
		defs[d.GetName()] = d
	}
	relation := func(def, name string) *core.Relation {
		for _, r := range defs[def].GetRelation() {
			if r.GetName() == name {
				return r
			}
		}
		return nil
	}
	out := map[string]bool{}
	var mark func(def, rel string)
	var reach func(def string, rw *core.UsersetRewrite)
	arrow := func(def, tupleset, computed string) {
		mark(def, tupleset)
		for _, a := range relation(def, tupleset).GetTypeInformation().GetAllowedDirectRelations() {
			if relation(a.GetNamespace(), computed) != nil {
				mark(a.GetNamespace(), computed)
			}
		}
	}
	child := func(def string, c *core.SetOperation_Child) {
		switch {
		case c.GetComputedUserset() != nil:
			mark(def, c.GetComputedUserset().GetRelation())
		case c.GetTupleToUserset() != nil:
			t := c.GetTupleToUserset()
			arrow(def, t.GetTupleset().GetRelation(), t.GetComputedUserset().GetRelation())
		case c.GetFunctionedTupleToUserset() != nil:
			t := c.GetFunctionedTupleToUserset()
			arrow(def, t.GetTupleset().GetRelation(), t.GetComputedUserset().GetRelation())
		case c.GetUsersetRewrite() != nil:
			reach(def, c.GetUsersetRewrite())
		}
	}
	// mark records def#rel and everything that feeds it
	mark = func(def, rel string) {
		key := def + "#" + rel
		if out[key] {
			return
		}
		out[key] = true
		r := relation(def, rel)
		if rw := r.GetUsersetRewrite(); rw != nil {
			reach(def, rw)
			return
		}
		for _, a := range r.GetTypeInformation().GetAllowedDirectRelations() {
			if s := a.GetRelation(); s != "" && s != "..." && relation(a.GetNamespace(), s) != nil {
				mark(a.GetNamespace(), s)
			}
		}
	}
	reach = func(def string, rw *core.UsersetRewrite) {
		for _, op := range []*core.SetOperation{rw.GetUnion(), rw.GetIntersection(), rw.GetExclusion()} {
			for _, c := range op.GetChild() {
				child(def, c)
			}
		}
	}
	// find every exclusion, however deeply nested, and mark what it subtracts
	var exclusions func(def string, rw *core.UsersetRewrite)
	exclusions = func(def string, rw *core.UsersetRewrite) {
		for _, op := range []*core.SetOperation{rw.GetUnion(), rw.GetIntersection(), rw.GetExclusion()} {
			for i, c := range op.GetChild() {
				if nested := c.GetUsersetRewrite(); nested != nil {
					exclusions(def, nested)
				}
				if op == rw.GetExclusion() && op != nil && i > 0 {
					child(def, c)
				}
			}
		}
	}
	for name, d := range defs {
		for _, r := range d.GetRelation() {
			if rw := r.GetUsersetRewrite(); rw != nil {
				exclusions(name, rw)
			}
		}
	}
	return out, nil
}
