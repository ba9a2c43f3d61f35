package engine

import "context"

// ImpersonationGate answers whether an actor may act as a target right now,
// for one permission: some impersonation object names the target and is live
// for the actor (its expiring actor relationship has not lapsed) with the
// permission inside its scope (the impersonation_scope caveat on that
// relationship). It reads fully consistent and fails closed on errors.
type ImpersonationGate struct {
	Engine Engine
}

// Live reports whether a live impersonation of target by actor allows permission.
func (g ImpersonationGate) Live(ctx context.Context, actor, target SubjectRef, permission string) (bool, error) {
	cursor := ""
	for {
		page, err := g.Engine.LookupResources(ctx, LookupResourcesRequest{
			ResourceType: "impersonation", Permission: "live", Subject: actor,
			Context:     map[string]any{"requested": permission},
			Consistency: Consistency{Mode: FullyConsistent}, PageSize: 1000, Cursor: cursor,
		})
		if err != nil {
			return false, err
		}
		for _, imp := range page.Resources {
			if imp.Permissionship != HasPermission {
				continue
			}
			rels, err := g.Engine.ReadRelationships(ctx, ReadRequest{
				Filter: RelationshipFilter{
					ResourceType: "impersonation", ResourceID: imp.ID, Relation: "target",
					Subject: &SubjectFilter{Type: target.Object.Type, ID: target.Object.ID},
				},
				Consistency: Consistency{Mode: FullyConsistent}, PageSize: 1,
			})
			if err != nil {
				return false, err
			}
			if len(rels.Relationships) > 0 {
				return true, nil
			}
		}
		if page.NextCursor == "" {
			return false, nil
		}
		cursor = page.NextCursor
	}
}
