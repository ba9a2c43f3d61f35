package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"
)

// Explain limits keep one explanation bounded on large graphs.
const (
	explainMaxDepth  = 32
	explainMaxPaths  = 64
	explainMaxFanout = 1000
	explainMaxChecks = 2000
)

// Explain returns the chains of stored relationships that grant the permission.
// It walks the schema's rewrite of the permission, reads the relationships each
// step names, and prunes with CheckPermission so only granting branches are kept.
// All reads and checks run at the revision of the first check.
func (s *SpiceDB) Explain(ctx context.Context, req CheckRequest) (Explanation, error) {
	top, err := s.Check(ctx, req)
	if err != nil {
		return Explanation{}, err
	}
	out := Explanation{Permissionship: top.Permissionship, CheckedAt: top.CheckedAt, Paths: [][]Relationship{}}
	if top.Permissionship == NoPermission {
		return out, nil
	}
	defs, err := s.compiledDefinitions(ctx)
	if err != nil {
		return Explanation{}, err
	}
	x := &explainer{s: s, defs: defs, req: req, at: Consistency{Mode: AtLeastAsFresh, Token: top.CheckedAt}, verdicts: map[string]bool{}}
	paths, err := x.paths(ctx, req.Resource, req.Permission, 0)
	if err != nil {
		return Explanation{}, err
	}
	if len(paths) > explainMaxPaths {
		paths = paths[:explainMaxPaths]
	}
	out.Paths = append(out.Paths, paths...)
	return out, nil
}

type explainer struct {
	s        *SpiceDB
	defs     map[string]*core.NamespaceDefinition
	req      CheckRequest
	at       Consistency
	verdicts map[string]bool
	checks   int
}

// grants reports whether obj#name reaches the subject (conditionally counts).
func (x *explainer) grants(ctx context.Context, obj ObjectRef, name string) (bool, error) {
	key := obj.String() + "#" + name
	if v, ok := x.verdicts[key]; ok {
		return v, nil
	}
	if x.checks >= explainMaxChecks {
		return false, nil
	}
	x.checks++
	res, err := x.s.Check(ctx, CheckRequest{Resource: obj, Permission: name, Subject: x.req.Subject, Context: x.req.Context, Consistency: x.at})
	if err != nil {
		return false, err
	}
	v := res.Permissionship != NoPermission
	x.verdicts[key] = v
	return v, nil
}

func (x *explainer) paths(ctx context.Context, obj ObjectRef, name string, depth int) ([][]Relationship, error) {
	if depth > explainMaxDepth {
		return nil, nil
	}
	// The subject itself as a subject set (e.g. group:eng#member asking about group:eng#member).
	if x.req.Subject.Object == obj && x.req.Subject.Relation == name {
		return [][]Relationship{{}}, nil
	}
	ok, err := x.grants(ctx, obj, name)
	if err != nil || !ok {
		return nil, err
	}
	def, found := x.defs[obj.Type]
	if !found {
		return nil, nil
	}
	var rel *core.Relation
	for _, r := range def.Relation {
		if r.Name == name {
			rel = r
		}
	}
	if rel == nil {
		return nil, nil
	}
	if rel.UsersetRewrite == nil {
		return x.stored(ctx, obj, name, depth)
	}
	return x.rewrite(ctx, obj, rel.UsersetRewrite, depth)
}

// stored expands a relation: direct matches end a path, subject sets recurse.
func (x *explainer) stored(ctx context.Context, obj ObjectRef, name string, depth int) ([][]Relationship, error) {
	page, err := x.s.ReadRelationships(ctx, ReadRequest{
		Filter:      RelationshipFilter{ResourceType: obj.Type, ResourceID: obj.ID, Relation: name},
		Consistency: x.at, PageSize: explainMaxFanout,
	})
	if err != nil {
		return nil, err
	}
	var out [][]Relationship
	for _, r := range page.Relationships {
		sub := r.Subject
		want := x.req.Subject
		direct := sub == want || (sub.IsWildcard() && sub.Relation == "" && want.Relation == "" && sub.Object.Type == want.Object.Type)
		if direct {
			out = append(out, []Relationship{r})
			continue
		}
		if sub.Relation == "" || sub.Relation == "..." {
			continue
		}
		rest, err := x.paths(ctx, sub.Object, sub.Relation, depth+1)
		if err != nil {
			return nil, err
		}
		out = appendPrefixed(out, r, rest)
		if len(out) >= explainMaxPaths {
			break
		}
	}
	return out, nil
}

func appendPrefixed(out [][]Relationship, head Relationship, rest [][]Relationship) [][]Relationship {
	for _, p := range rest {
		path := make([]Relationship, 0, len(p)+1)
		path = append(path, head)
		out = append(out, append(path, p...))
	}
	return out
}

func (x *explainer) rewrite(ctx context.Context, obj ObjectRef, rw *core.UsersetRewrite, depth int) ([][]Relationship, error) {
	switch op := rw.RewriteOperation.(type) {
	case *core.UsersetRewrite_Union:
		return x.children(ctx, obj, op.Union.Child, depth)
	case *core.UsersetRewrite_Intersection:
		// every branch is needed: the explanation lists the paths of each branch.
		return x.children(ctx, obj, op.Intersection.Child, depth)
	case *core.UsersetRewrite_Exclusion:
		// the grant comes from the base; the excluded branches grant nothing.
		if len(op.Exclusion.Child) == 0 {
			return nil, nil
		}
		return x.child(ctx, obj, op.Exclusion.Child[0], depth)
	}
	return nil, nil
}

func (x *explainer) children(ctx context.Context, obj ObjectRef, cs []*core.SetOperation_Child, depth int) ([][]Relationship, error) {
	var out [][]Relationship
	for _, c := range cs {
		p, err := x.child(ctx, obj, c, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}

func (x *explainer) child(ctx context.Context, obj ObjectRef, c *core.SetOperation_Child, depth int) ([][]Relationship, error) {
	switch ch := c.ChildType.(type) {
	case *core.SetOperation_Child_ComputedUserset:
		return x.paths(ctx, obj, ch.ComputedUserset.Relation, depth+1)
	case *core.SetOperation_Child_UsersetRewrite:
		return x.rewrite(ctx, obj, ch.UsersetRewrite, depth)
	case *core.SetOperation_Child_TupleToUserset:
		return x.arrow(ctx, obj, ch.TupleToUserset.GetTupleset().GetRelation(), ch.TupleToUserset.GetComputedUserset().GetRelation(), depth)
	case *core.SetOperation_Child_FunctionedTupleToUserset:
		return x.arrow(ctx, obj, ch.FunctionedTupleToUserset.GetTupleset().GetRelation(), ch.FunctionedTupleToUserset.GetComputedUserset().GetRelation(), depth)
	case *core.SetOperation_Child_XSelf:
		if x.req.Subject.Object == obj && x.req.Subject.Relation == "" {
			return [][]Relationship{{}}, nil
		}
	}
	return nil, nil
}

// arrow follows tupleset relationships (e.g. parent) and explains the computed relation on each target.
func (x *explainer) arrow(ctx context.Context, obj ObjectRef, tupleset, computed string, depth int) ([][]Relationship, error) {
	page, err := x.s.ReadRelationships(ctx, ReadRequest{
		Filter:      RelationshipFilter{ResourceType: obj.Type, ResourceID: obj.ID, Relation: tupleset},
		Consistency: x.at, PageSize: explainMaxFanout,
	})
	if err != nil {
		return nil, err
	}
	var out [][]Relationship
	for _, r := range page.Relationships {
		if r.Subject.IsWildcard() {
			continue
		}
		rest, err := x.paths(ctx, r.Subject.Object, computed, depth+1)
		if err != nil {
			return nil, err
		}
		if len(rest) == 0 {
			continue
		}
		heads := []Relationship{r}
		if obj.Type == orgType && tupleset == "lineage" {
			if heads, err = x.parentChain(ctx, r); err != nil {
				return nil, err
			}
		}
		for _, p := range rest {
			out = append(out, append(slices.Clip(heads), p...))
		}
		if len(out) >= explainMaxPaths {
			break
		}
	}
	return out, nil
}

// parentChain shows an organization's lineage relationship (the directory's
// shortcut to an ancestor) as the parent relationships it stands for, from
// the organization up to that ancestor, read at the same revision: the chain
// an auditor expects. Where the parents do not lead there (a graph the
// directory did not write), the lineage relationship is shown as stored.
func (x *explainer) parentChain(ctx context.Context, lineage Relationship) ([]Relationship, error) {
	var chain []Relationship
	cur, to := lineage.Resource, lineage.Subject.Object
	for range explainMaxDepth {
		page, err := x.s.ReadRelationships(ctx, ReadRequest{
			Filter:      RelationshipFilter{ResourceType: orgType, ResourceID: cur.ID, Relation: "parent"},
			Consistency: x.at, PageSize: 2,
		})
		if err != nil {
			return nil, err
		}
		if len(page.Relationships) != 1 || page.Relationships[0].Subject.Object.Type != orgType {
			break // none, or more than one: not the directory's tree
		}
		up := page.Relationships[0]
		chain = append(chain, up)
		if up.Subject.Object == to {
			return chain, nil
		}
		cur = up.Subject.Object
	}
	return []Relationship{lineage}, nil
}

// compiledSchema caches the parsed stored schema, keyed by its text.
type compiledSchema struct {
	mu   sync.Mutex
	text string
	defs map[string]*core.NamespaceDefinition
}

func (s *SpiceDB) compiledDefinitions(ctx context.Context) (map[string]*core.NamespaceDefinition, error) {
	text, err := s.ReadSchema(ctx)
	if err != nil {
		return nil, err
	}
	s.compiled.mu.Lock()
	defer s.compiled.mu.Unlock()
	if s.compiled.defs != nil && s.compiled.text == text {
		return s.compiled.defs, nil
	}
	defs, err := compileDefinitions(text)
	if err != nil {
		return nil, err
	}
	s.compiled.text, s.compiled.defs = text, defs
	return defs, nil
}

// compileDefinitions parses a schema into its object definitions by name.
func compileDefinitions(text string) (map[string]*core.NamespaceDefinition, error) {
	cs, err := compiler.Compile(compiler.InputSchema{Source: input.Source("schema"), SchemaString: text}, compiler.AllowUnprefixedObjectType())
	if err != nil {
		return nil, fmt.Errorf("engine: compile stored schema: %w", err)
	}
	defs := make(map[string]*core.NamespaceDefinition, len(cs.ObjectDefinitions))
	for _, d := range cs.ObjectDefinitions {
		defs[d.Name] = d
	}
	return defs, nil
}
