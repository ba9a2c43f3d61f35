package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

func (s *Server) mountRelationships(g routes) {
	g.POST("/relationships/write", s.writeRelationships)
	g.POST("/relationships/read", s.readRelationships)
}

// updateJSON is one update of POST /v1/relationships/write (and of a blast radius).
type updateJSON struct {
	Operation    string            `json:"operation"`
	Relationship *relationshipJSON `json:"relationship"`
}

func (s *Server) writeRelationships(c echo.Context) error {
	var in struct {
		Updates []updateJSON `json:"updates"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	updates, err := parseUpdates(in.Updates, false)
	if err != nil {
		return err
	}
	token, err := s.engine.WriteRelationships(c.Request().Context(), updates)
	if err != nil {
		return err
	}
	if err := s.recordProvider(c.Request().Context(), principal(c), "relationships.write", "relationships", writeDetails(updates, token)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"writtenAt": token})
}

// parseUpdates validates the updates of a raw write; system relations are
// refused unless system is set (a blast radius weighs them, never writes them).
func parseUpdates(in []updateJSON, system bool) ([]engine.RelationshipUpdate, error) {
	switch {
	case len(in) == 0:
		return nil, trellis.Invalid("updates", "at least one update is required")
	case len(in) > engine.MaxUpdatesPerWrite:
		return nil, trellis.Invalid("updates", "at most %d updates per write, got %d", engine.MaxUpdatesPerWrite, len(in))
	}
	updates := make([]engine.RelationshipUpdate, len(in))
	for i, u := range in {
		field := fmt.Sprintf("updates[%d]", i)
		op := engine.Operation(u.Operation)
		if op != engine.OpTouch && op != engine.OpCreate && op != engine.OpDelete {
			return nil, trellis.Invalid(field+".operation", "must be touch, create or delete, got %q", u.Operation)
		}
		if u.Relationship == nil {
			return nil, trellis.Invalid(field+".relationship", "is required")
		}
		rel, err := u.Relationship.parse(field + ".relationship")
		if err != nil {
			return nil, err
		}
		// the directory owns the system definitions' relationships: a raw
		// write could give a tenant a parent (a cycle, or another tenant's
		// admins) that its rows do not show
		if !system && schema.IsSystemDefinition(rel.Resource.Type) {
			return nil, trellis.RuleAt(field+".relationship.relation", "system_relation",
				"%s: %s#%s is a system relation, written only by the directory (use its endpoints: organizations, members, groups, roles, delegations, impersonations)",
				field+".relationship", rel.Resource.Type, rel.Relation)
		}
		updates[i] = engine.RelationshipUpdate{Operation: op, Relationship: rel}
	}
	return updates, nil
}

func (s *Server) readRelationships(c echo.Context) error {
	var in struct {
		Filter *struct {
			ResourceType string `json:"resourceType"`
			ResourceID   string `json:"resourceId"`
			Relation     string `json:"relation"`
			Subject      string `json:"subject"`
		} `json:"filter"`
		Consistency consistencyJSON `json:"consistency"`
		PageSize    *int            `json:"pageSize"`
		Cursor      string          `json:"cursor"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	if in.Filter == nil {
		return trellis.Invalid("filter", "is required")
	}
	f := in.Filter
	if f.ResourceType == "" {
		return trellis.Invalid("filter.resourceType", "is required")
	}
	if err := engine.ValidateType("filter.resourceType", f.ResourceType); err != nil {
		return err
	}
	if f.ResourceID != "" {
		if _, err := engine.ParseObjectRef("filter.resourceId", f.ResourceType+":"+f.ResourceID); err != nil {
			return err
		}
	}
	if f.Relation != "" {
		if err := engine.ValidateRelation("filter.relation", f.Relation); err != nil {
			return err
		}
	}
	sub, err := parseSubjectFilter("filter.subject", f.Subject)
	if err != nil {
		return err
	}
	cons, err := in.Consistency.parse("consistency")
	if err != nil {
		return err
	}
	size, err := pageSize("pageSize", in.PageSize, 100, 1000)
	if err != nil {
		return err
	}
	page, err := s.engine.ReadRelationships(c.Request().Context(), engine.ReadRequest{
		Filter:      engine.RelationshipFilter{ResourceType: f.ResourceType, ResourceID: f.ResourceID, Relation: f.Relation, Subject: sub},
		Consistency: cons, PageSize: size, Cursor: in.Cursor,
	})
	if err != nil {
		return err
	}
	rels := make([]relationshipJSON, len(page.Relationships))
	for i, r := range page.Relationships {
		rels[i] = toRelationshipJSON(r)
	}
	return c.JSON(http.StatusOK, map[string]any{"relationships": rels, "nextCursor": nullable(page.NextCursor)})
}
