package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"
)

// NewScratch starts a throwaway in-memory SpiceDB holding schemaText and rels,
// for "what if" questions (schema diffs, moves, blast radius) that must not
// touch the real graph. stop releases it.
//
// It is an embedded server (memdb) like the real one, with its namespace and
// dispatch caches: SpiceDB's development context, which it replaced, decodes
// every definition again on each dispatch, and a move preview's lookups took
// seconds there for a few dozen relationships. Relationships already expired
// are left out (they grant nothing).
func NewScratch(ctx context.Context, schemaText string, rels []Relationship) (scratch *SpiceDB, stop func(), err error) {
	e, err := StartEmbedded(ctx, EmbeddedConfig{DispatchCacheMaxCost: "8MiB"})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: scratch: %w", err)
	}
	stop = func() { _ = e.Close() }
	if _, err := e.WriteSchema(ctx, schemaText); err != nil {
		stop()
		return nil, nil, fmt.Errorf("engine: scratch: %w", err)
	}
	now := time.Now()
	ups := make([]RelationshipUpdate, 0, MaxUpdatesPerWrite)
	flush := func() error {
		if len(ups) == 0 {
			return nil
		}
		_, err := e.WriteRelationships(ctx, ups)
		ups = ups[:0]
		return err
	}
	seen := make(map[string]bool, len(rels))
	for _, r := range rels {
		if k := r.String(); seen[k] || (r.ExpiresAt != nil && !r.ExpiresAt.After(now)) {
			continue
		} else {
			seen[k] = true
		}
		if ups = append(ups, RelationshipUpdate{Operation: OpTouch, Relationship: r}); len(ups) == MaxUpdatesPerWrite {
			if err := flush(); err != nil {
				stop()
				return nil, nil, fmt.Errorf("engine: scratch: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		stop()
		return nil, nil, fmt.Errorf("engine: scratch: %w", err)
	}
	return e.SpiceDB, stop, nil
}

// ErrTooManyRelationships is ReadReachable's answer when the relationships a
// question depends on are more than its limit.
var ErrTooManyRelationships = errors.New("engine: the relationships reachable from the question exceed the limit")

// ReadReachable reads, from r, every stored relationship that SpiceDB may
// read to answer a question about the roots under schemaText: a check or
// subject lookup of root.Object's root.Relation (a relation or a permission;
// "" stands for all of its type's relations and permissions). It follows the
// schema, not the data's size: a relation reads its tuples and goes on into
// their subject sets (group:g#member), a permission walks its rewrite and goes
// on along its arrows (parent->manage reads parent and asks the parent for
// manage). Loaded into a scratch engine, the result answers those questions as
// the whole graph would, however many unrelated objects the graph holds.
//
// Past limit relationships (limit > 0) it stops with ErrTooManyRelationships.
// A schema construct it does not know is an error, never a silent omission.
func ReadReachable(ctx context.Context, r RelationshipReader, schemaText string, roots []SubjectRef, limit int) ([]Relationship, error) {
	cs, err := compiler.Compile(compiler.InputSchema{Source: input.Source("reachable"), SchemaString: schemaText}, compiler.AllowUnprefixedObjectType())
	if err != nil {
		return nil, fmt.Errorf("engine: reachable: %w", err)
	}
	w := &reachWalk{ctx: ctx, r: r, limit: limit, defs: map[string]map[string]*core.Relation{},
		seen: map[string]bool{}, loaded: map[string][]Relationship{}}
	for _, d := range cs.ObjectDefinitions {
		rels := map[string]*core.Relation{}
		for _, rel := range d.GetRelation() {
			rels[rel.GetName()] = rel
		}
		w.defs[d.GetName()] = rels
	}
	for _, root := range roots {
		if root.Relation != "" {
			w.push(root.Object, root.Relation)
			continue
		}
		for name := range w.defs[root.Object.Type] {
			w.push(root.Object, name)
		}
	}
	for len(w.queue) > 0 {
		it := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		if err := w.expand(it.obj, it.name); err != nil {
			return nil, err
		}
	}
	return w.out, nil
}

type reachItem struct {
	obj  ObjectRef
	name string
}

type reachWalk struct {
	ctx    context.Context
	r      RelationshipReader
	limit  int
	defs   map[string]map[string]*core.Relation // type → relation or permission name → definition
	seen   map[string]bool                      // items pushed
	loaded map[string][]Relationship            // "type:id#relation" → its tuples
	queue  []reachItem
	out    []Relationship
}

func (w *reachWalk) push(obj ObjectRef, name string) {
	if obj.ID == "*" {
		return // a wildcard subject reads nothing further
	}
	if _, ok := w.defs[obj.Type][name]; !ok {
		return // SpiceDB skips an arrow or subject set to a name the type lacks
	}
	key := obj.String() + "#" + name
	if w.seen[key] {
		return
	}
	w.seen[key] = true
	w.queue = append(w.queue, reachItem{obj, name})
}

// tuples loads (once) the relationships of obj's relation.
func (w *reachWalk) tuples(obj ObjectRef, relation string) ([]Relationship, error) {
	key := obj.String() + "#" + relation
	if got, ok := w.loaded[key]; ok {
		return got, nil
	}
	room := 0
	if w.limit > 0 {
		room = w.limit - len(w.out) + 1 // one more than fits tells "too many"
	}
	got, err := ReadAll(w.ctx, w.r, RelationshipFilter{ResourceType: obj.Type, ResourceID: obj.ID, Relation: relation}, room)
	if err != nil {
		return nil, err
	}
	w.loaded[key] = got
	w.out = append(w.out, got...)
	if w.limit > 0 && len(w.out) > w.limit {
		return nil, fmt.Errorf("%w (%d)", ErrTooManyRelationships, w.limit)
	}
	return got, nil
}

func (w *reachWalk) expand(obj ObjectRef, name string) error {
	def := w.defs[obj.Type][name]
	if def.GetUsersetRewrite() == nil { // a relation: its tuples and their subject sets
		rels, err := w.tuples(obj, name)
		if err != nil {
			return err
		}
		for _, rel := range rels {
			if s := rel.Subject; s.Relation != "" && s.Relation != "..." {
				w.push(s.Object, s.Relation)
			}
		}
		return nil
	}
	return w.rewrite(obj, name, def.GetUsersetRewrite())
}

func (w *reachWalk) rewrite(obj ObjectRef, name string, rw *core.UsersetRewrite) error {
	var set *core.SetOperation
	switch op := rw.GetRewriteOperation().(type) {
	case *core.UsersetRewrite_Union:
		set = op.Union
	case *core.UsersetRewrite_Intersection:
		set = op.Intersection
	case *core.UsersetRewrite_Exclusion:
		set = op.Exclusion
	default:
		return fmt.Errorf("engine: reachable: %s#%s: unknown rewrite %T", obj.Type, name, op)
	}
	for _, child := range set.GetChild() {
		switch c := child.GetChildType().(type) {
		case *core.SetOperation_Child_XThis: // the relation's own tuples (legacy schemas)
			rels, err := w.tuples(obj, name)
			if err != nil {
				return err
			}
			for _, rel := range rels {
				if s := rel.Subject; s.Relation != "" && s.Relation != "..." {
					w.push(s.Object, s.Relation)
				}
			}
		case *core.SetOperation_Child_ComputedUserset:
			w.push(obj, c.ComputedUserset.GetRelation())
		case *core.SetOperation_Child_TupleToUserset:
			if err := w.arrow(obj, c.TupleToUserset.GetTupleset().GetRelation(), c.TupleToUserset.GetComputedUserset().GetRelation()); err != nil {
				return err
			}
		case *core.SetOperation_Child_FunctionedTupleToUserset:
			if err := w.arrow(obj, c.FunctionedTupleToUserset.GetTupleset().GetRelation(), c.FunctionedTupleToUserset.GetComputedUserset().GetRelation()); err != nil {
				return err
			}
		case *core.SetOperation_Child_UsersetRewrite:
			if err := w.rewrite(obj, name, c.UsersetRewrite); err != nil {
				return err
			}
		case *core.SetOperation_Child_XNil, *core.SetOperation_Child_XSelf:
			// nil grants nothing; self is the object itself: no tuples
		default:
			return fmt.Errorf("engine: reachable: %s#%s: unknown rewrite child %T", obj.Type, name, c)
		}
	}
	return nil
}

// arrow follows tupleset->computed: the tupleset's tuples, then computed on each subject.
func (w *reachWalk) arrow(obj ObjectRef, tupleset, computed string) error {
	rels, err := w.tuples(obj, tupleset)
	if err != nil {
		return err
	}
	for _, rel := range rels {
		w.push(rel.Subject.Object, computed)
	}
	return nil
}
