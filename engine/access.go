package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"
)

// SubjectLooker is the one engine method the access comparisons need.
type SubjectLooker interface {
	LookupSubjects(ctx context.Context, req LookupSubjectsRequest) ([]FoundObject, error)
}

// UsersWith lists the users holding permission on resource unconditionally
// (wildcards and conditional answers aside), sorted, fully consistent.
func UsersWith(ctx context.Context, g SubjectLooker, resource ObjectRef, permission string) ([]string, error) {
	found, err := g.LookupSubjects(ctx, LookupSubjectsRequest{
		Resource: resource, Permission: permission, SubjectType: "user", Consistency: Consistency{Mode: FullyConsistent},
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(found))
	for _, f := range found {
		if f.ID != "*" && f.Permissionship == HasPermission {
			out = append(out, f.ID)
		}
	}
	slices.Sort(out)
	return out, nil
}

// AccessTarget is one permission on one object whose holders a comparison
// weighs. MissingBefore or MissingAfter says the permission does not exist on
// that side (a schema change adds or removes it): nobody holds it there.
type AccessTarget struct {
	Object                      ObjectRef
	Permission                  string
	MissingBefore, MissingAfter bool
}

// AccessChange is one (user, resource, permission) gained or lost.
type AccessChange struct {
	Subject    SubjectRef
	Resource   ObjectRef
	Permission string
}

// DiffAccess is the one way Trellis says what a change would grant and
// revoke (blast radius, move preview, schema-diff impact): for each target,
// the users holding it in before and not in after are lost, the other way
// round gained. emit receives each change in target order, users sorted.
func DiffAccess(ctx context.Context, before, after SubjectLooker, targets []AccessTarget, emit func(gained bool, c AccessChange) error) error {
	for _, t := range targets {
		var was, is []string
		var err error
		if !t.MissingBefore {
			if was, err = UsersWith(ctx, before, t.Object, t.Permission); err != nil {
				return err
			}
		}
		if !t.MissingAfter {
			if is, err = UsersWith(ctx, after, t.Object, t.Permission); err != nil {
				return err
			}
		}
		if err := diffSorted(was, is, func(gained bool, user string) error {
			return emit(gained, AccessChange{Subject: SubjectRef{Object: ObjectRef{Type: "user", ID: user}}, Resource: t.Object, Permission: t.Permission})
		}); err != nil {
			return err
		}
	}
	return nil
}

func diffSorted(was, is []string, fn func(gained bool, user string) error) error {
	for _, u := range is {
		if _, found := slices.BinarySearch(was, u); !found {
			if err := fn(true, u); err != nil {
				return err
			}
		}
	}
	for _, u := range was {
		if _, found := slices.BinarySearch(is, u); !found {
			if err := fn(false, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrTooManyObjects is Blast's answer when the objects whose permissions an
// update may change are more than its limit.
var ErrTooManyObjects = errors.New("engine: the objects a change may affect exceed the limit")

// BlastLimits bound one blast-radius computation.
type BlastLimits struct {
	MaxObjects       int // objects whose permissions are compared
	MaxRelationships int // relationships loaded into the scratch engine
}

// BlastStats says how large a blast-radius computation was.
type BlastStats struct {
	Objects       int // objects whose permissions were compared
	Relationships int // relationships loaded into the scratch engine
}

// Blast computes, without applying them, which (user, object, permission)
// triples updates would grant or revoke, for every permission of the schema.
//
// The objects an update can affect are those whose permissions can reach its
// resource: the resource itself and, transitively, every object naming one of
// them as a subject (a child organization's parent, a group's org, a document's
// folder), read in reverse from the graph, plus those the updates themselves
// make point at them. Everything those objects' permissions depend on, before
// and after, is read forward (ReadReachable from them and from the updates'
// subjects) into a scratch engine: both sides are answered there, on one
// snapshot, the "after" side once the updates are applied to it. Other
// tenants are never read. Past the limits it stops with ErrTooManyObjects or
// ErrTooManyRelationships.
func Blast(ctx context.Context, graph Engine, schemaText string, updates []RelationshipUpdate, lim BlastLimits, emit func(gained bool, c AccessChange) error) (BlastStats, error) {
	var stats BlastStats
	cs, err := compiler.Compile(compiler.InputSchema{Source: input.Source("blast"), SchemaString: schemaText}, compiler.AllowUnprefixedObjectType())
	if err != nil {
		return stats, fmt.Errorf("engine: blast: %w", err)
	}
	perms := map[string][]string{}              // type → its permissions
	referrers := map[string][]relationPointer{} // subject type → relations that may name it
	for _, d := range cs.ObjectDefinitions {
		for _, r := range d.GetRelation() {
			if r.GetUsersetRewrite() != nil {
				perms[d.GetName()] = append(perms[d.GetName()], r.GetName())
				continue
			}
			seen := map[string]bool{}
			for _, a := range r.GetTypeInformation().GetAllowedDirectRelations() {
				if ns := a.GetNamespace(); !seen[ns] {
					seen[ns] = true
					referrers[ns] = append(referrers[ns], relationPointer{typ: d.GetName(), relation: r.GetName()})
				}
			}
		}
	}
	// the reverse closure of the updates' resources
	added := map[ObjectRef][]ObjectRef{} // subject object → resources the updates make point at it
	seen := map[ObjectRef]bool{}
	var queue, objects []ObjectRef
	push := func(o ObjectRef) error {
		if seen[o] || o.ID == "*" {
			return nil
		}
		if lim.MaxObjects > 0 && len(objects) >= lim.MaxObjects {
			return fmt.Errorf("%w (%d)", ErrTooManyObjects, lim.MaxObjects)
		}
		seen[o] = true
		objects = append(objects, o)
		queue = append(queue, o)
		return nil
	}
	for _, u := range updates {
		if u.Operation != OpDelete {
			added[u.Relationship.Subject.Object] = append(added[u.Relationship.Subject.Object], u.Relationship.Resource)
		}
	}
	for _, u := range updates {
		if err := push(u.Relationship.Resource); err != nil {
			return stats, err
		}
	}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		for _, p := range referrers[o.Type] {
			rels, err := ReadAll(ctx, graph, RelationshipFilter{ResourceType: p.typ, Relation: p.relation, Subject: &SubjectFilter{Type: o.Type, ID: o.ID}}, 0)
			if err != nil {
				return stats, err
			}
			for _, r := range rels {
				if err := push(r.Resource); err != nil {
					return stats, err
				}
			}
		}
		for _, r := range added[o] {
			if err := push(r); err != nil {
				return stats, err
			}
		}
	}
	sort.Slice(objects, func(i, j int) bool { return objects[i].String() < objects[j].String() })
	stats.Objects = len(objects)

	roots := make([]SubjectRef, 0, len(objects)+len(updates))
	for _, o := range objects {
		roots = append(roots, SubjectRef{Object: o})
	}
	for _, u := range updates {
		if u.Operation != OpDelete {
			roots = append(roots, SubjectRef{Object: u.Relationship.Subject.Object})
		}
	}
	rels, err := ReadReachable(ctx, graph, schemaText, roots, lim.MaxRelationships)
	if err != nil {
		return stats, err
	}
	stats.Relationships = len(rels)
	scratch, stop, err := NewScratch(ctx, schemaText, rels)
	if err != nil {
		return stats, err
	}
	defer stop()

	var targets []AccessTarget
	for _, o := range objects {
		for _, p := range perms[o.Type] {
			targets = append(targets, AccessTarget{Object: o, Permission: p})
		}
	}
	before := make([][]string, len(targets))
	for i, t := range targets {
		if before[i], err = UsersWith(ctx, scratch, t.Object, t.Permission); err != nil {
			return stats, err
		}
	}
	for start := 0; start < len(updates); start += MaxUpdatesPerWrite {
		if _, err := scratch.WriteRelationships(ctx, updates[start:min(start+MaxUpdatesPerWrite, len(updates))]); err != nil {
			return stats, err
		}
	}
	for i, t := range targets {
		after, err := UsersWith(ctx, scratch, t.Object, t.Permission)
		if err != nil {
			return stats, err
		}
		if err := diffSorted(before[i], after, func(gained bool, user string) error {
			return emit(gained, AccessChange{Subject: SubjectRef{Object: ObjectRef{Type: "user", ID: user}}, Resource: t.Object, Permission: t.Permission})
		}); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

type relationPointer struct{ typ, relation string }

// Anchors returns the organizations resource hangs from (an organization is
// its own); ok is false when the resource is not confined to organizations
// (it reaches the platform, or the walk's bounds). See ImpersonationGate.
func Anchors(ctx context.Context, g Engine, resource ObjectRef) (orgs []string, ok bool, err error) {
	return ImpersonationGate{Engine: g}.anchors(ctx, resource)
}

// OrgPath returns org and its ancestors, org first, from the graph.
func OrgPath(ctx context.Context, g Engine, org string) (path []string, ok bool, err error) {
	return ImpersonationGate{Engine: g}.orgPath(ctx, org)
}
