package engine

import (
	"context"
	"slices"
)

// Bounds of the walk that finds the organizations a resource hangs from: past
// them the resource counts as unconfined and an impersonated check denies.
const (
	maxConfinementObjects       = 64     // objects visited, the resource included
	maxConfinementRelationships = 10_000 // relationships read over all of them
)

// ImpersonationGate answers whether an actor may act as a target right now,
// for one permission on one resource: some impersonation object names the
// target and is live for the actor (its expiring actor relationship has not
// lapsed) with the permission inside its scope (the impersonation_scope caveat
// on that relationship), and the resource lies inside that impersonation's
// organization subtree (ADR 0009, confinement). It reads fully consistent and
// fails closed on errors and on resources it cannot place.
type ImpersonationGate struct {
	Engine Engine
}

// Live reports whether a live impersonation of target by actor allows
// permission on resource.
func (g ImpersonationGate) Live(ctx context.Context, actor, target SubjectRef, resource ObjectRef, permission string) (bool, error) {
	if resource.Type == platformType {
		return false, nil // the platform lies outside every organization
	}
	orgs, err := g.liveOrgs(ctx, actor, target, permission)
	if err != nil || len(orgs) == 0 {
		return false, err
	}
	anchors, ok, err := g.anchors(ctx, resource)
	if err != nil || !ok || len(anchors) == 0 {
		return false, err // unknown anchor: deny
	}
	paths := make([][]string, len(anchors))
	for i, a := range anchors {
		if paths[i], ok, err = g.orgPath(ctx, a); err != nil || !ok {
			return false, err
		}
	}
	for _, o := range orgs {
		inside := true
		for _, p := range paths {
			inside = inside && slices.Contains(p, o)
		}
		if inside {
			return true, nil
		}
	}
	return false, nil
}

const platformType = "platform"

// liveOrgs returns the organizations of the impersonations of target that are
// live for actor and allow permission.
func (g ImpersonationGate) liveOrgs(ctx context.Context, actor, target SubjectRef, permission string) ([]string, error) {
	var orgs []string
	cursor := ""
	for {
		page, err := g.Engine.LookupResources(ctx, LookupResourcesRequest{
			ResourceType: "impersonation", Permission: "live", Subject: actor,
			Context:     map[string]any{"requested": permission},
			Consistency: Consistency{Mode: FullyConsistent}, PageSize: 1000, Cursor: cursor,
		})
		if err != nil {
			return nil, err
		}
		for _, imp := range page.Resources {
			if imp.Permissionship != HasPermission {
				continue
			}
			rels, err := g.Engine.ReadRelationships(ctx, ReadRequest{
				Filter:      RelationshipFilter{ResourceType: "impersonation", ResourceID: imp.ID},
				Consistency: Consistency{Mode: FullyConsistent}, PageSize: 100,
			})
			if err != nil {
				return nil, err
			}
			targets, org := false, []string{}
			for _, r := range rels.Relationships {
				switch {
				case r.Relation == "target" && r.Subject == target:
					targets = true
				case r.Relation == "org" && r.Subject.Object.Type == orgType:
					org = append(org, r.Subject.Object.ID)
				}
			}
			if targets && len(org) == 1 && !slices.Contains(orgs, org[0]) { // one organization, or none counts
				orgs = append(orgs, org[0])
			}
		}
		if page.NextCursor == "" {
			return orgs, nil
		}
		cursor = page.NextCursor
	}
}

// anchors returns the organizations resource hangs from: an organization is
// its own; any other object hangs from the organizations its relationships
// name as subjects (org, a group's or a partner's admins…), directly or
// through the objects they name (a group, a folder, a service account), users
// and wildcards aside. ok is false when the walk meets the platform or
// exceeds its bounds: such a resource is not confined to any organization.
func (g ImpersonationGate) anchors(ctx context.Context, resource ObjectRef) (orgs []string, ok bool, err error) {
	if resource.Type == orgType {
		return []string{resource.ID}, true, nil
	}
	seen := map[ObjectRef]bool{resource: true}
	queue := []ObjectRef{resource}
	read := 0
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		cursor := ""
		for {
			page, err := g.Engine.ReadRelationships(ctx, ReadRequest{
				Filter:      RelationshipFilter{ResourceType: obj.Type, ResourceID: obj.ID},
				Consistency: Consistency{Mode: FullyConsistent}, PageSize: 1000, Cursor: cursor,
			})
			if err != nil {
				return nil, false, err
			}
			if read += len(page.Relationships); read > maxConfinementRelationships {
				return nil, false, nil
			}
			for _, r := range page.Relationships {
				sub := r.Subject.Object
				switch {
				case r.Subject.IsWildcard() || sub.Type == "user":
				case sub.Type == platformType:
					return nil, false, nil
				case sub.Type == orgType:
					if !slices.Contains(orgs, sub.ID) {
						orgs = append(orgs, sub.ID)
					}
				case !seen[sub]:
					if len(seen) >= maxConfinementObjects {
						return nil, false, nil
					}
					seen[sub] = true
					queue = append(queue, sub)
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	return orgs, true, nil
}

// orgPath returns org and its ancestors, org first, from the graph's parent
// relationships; ok is false for a tree it cannot follow (two parents, a
// cycle, deeper than maxAnchorHops).
func (g ImpersonationGate) orgPath(ctx context.Context, org string) (path []string, ok bool, err error) {
	for id := org; len(path) < maxAnchorHops; {
		if slices.Contains(path, id) {
			return nil, false, nil
		}
		path = append(path, id)
		page, err := g.Engine.ReadRelationships(ctx, ReadRequest{
			Filter:      RelationshipFilter{ResourceType: orgType, ResourceID: id, Relation: "parent"},
			Consistency: Consistency{Mode: FullyConsistent}, PageSize: 2,
		})
		if err != nil {
			return nil, false, err
		}
		switch len(page.Relationships) {
		case 0:
			return path, true, nil
		case 1:
			id = page.Relationships[0].Subject.Object.ID
		default:
			return nil, false, nil
		}
	}
	return nil, false, nil
}
