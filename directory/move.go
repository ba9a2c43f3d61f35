package directory

import (
	"context"
	"errors"
	"slices"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Bounds of a move preview.
const (
	moveMaxRelationships = 50000
	moveMaxOrgs          = 200
	moveMaxListed        = 1000
)

// systemTypes hold every relationship an organization permission can depend on.
var systemTypes = []string{"platform", "organization", "group", "role", "role_binding", "service_account"}

// MoveOrg is the body of POST /v1/organizations/{org}/move.
type MoveOrg struct {
	Parent *string `json:"parent"` // required; "" moves to the top level (provider admins)
	DryRun bool    `json:"dryRun"`
}

// AccessChange is one (subject, organization, permission) gained or lost.
type AccessChange struct {
	Subject      string `json:"subject"`
	Organization string `json:"organization"`
	Permission   string `json:"permission"`
}

// Impact is what a change would grant and revoke.
type Impact struct {
	Gained []AccessChange `json:"gained"`
	Lost   []AccessChange `json:"lost"`
	Totals struct {
		Gained        int `json:"gained"`
		Lost          int `json:"lost"`
		Organizations int `json:"organizations"`
	} `json:"totals"`
	Truncated bool `json:"truncated,omitempty"`
}

// MoveResult answers a move (or its preview).
type MoveResult struct {
	Organization string  `json:"organization"`
	From         *string `json:"from"`
	To           *string `json:"to"`
	DryRun       bool    `json:"dryRun"`
	Applied      bool    `json:"applied"`
	Impact       Impact  `json:"impact"`
}

// plan validates a move and returns the org, its subtree and the tuple updates.
func (s *Service) planMove(ctx context.Context, tx store.Tx, p Principal, ref string, in MoveOrg) (store.Org, string, []store.Org, []engine.RelationshipUpdate, error) {
	org, err := s.visibleOrg(ctx, tx, p, ref)
	if err != nil {
		return org, "", nil, nil, err
	}
	if err := s.authorizeAbove(ctx, tx, p, org); err != nil {
		return org, "", nil, nil, err
	}
	orgs, err := subtree(ctx, tx, org)
	if err != nil {
		return org, "", nil, nil, err
	}
	newParent := ""
	depth := 0
	if in.Parent != nil && *in.Parent != "" {
		parent, err := resolveOrg(ctx, tx, *in.Parent)
		if errors.Is(err, trellis.ErrNotFound) {
			return org, "", nil, nil, trellis.Invalid("parent", "organization %q does not exist", *in.Parent)
		} else if err != nil {
			return org, "", nil, nil, err
		}
		if slices.ContainsFunc(orgs, func(o store.Org) bool { return o.ID == parent.ID }) {
			return org, "", nil, nil, trellis.Rule("cycle", "organization %s cannot move under %s, which is itself or inside its subtree", org.Slug, parent.Slug)
		}
		if err := s.authorize(ctx, tx, p, parent, permManage); err != nil {
			if errors.Is(err, trellis.ErrNotFound) {
				return org, "", nil, nil, trellis.Invalid("parent", "organization %q does not exist", *in.Parent)
			}
			return org, "", nil, nil, err
		}
		path, err := s.path(ctx, tx, parent)
		if err != nil {
			return org, "", nil, nil, err
		}
		newParent, depth = parent.ID, len(path)
	} else if err := s.requireProvider(ctx, p); err != nil {
		return org, "", nil, nil, err
	}
	base, err := s.path(ctx, tx, org)
	if err != nil {
		return org, "", nil, nil, err
	}
	height := 0
	for _, o := range orgs {
		op, err := s.path(ctx, tx, o)
		if err != nil {
			return org, "", nil, nil, err
		}
		height = max(height, len(op)-len(base)+1)
	}
	if depth+height > s.cfg.MaxDepth {
		return org, "", nil, nil, trellis.Rule("max_depth", "the move would nest organizations %d levels deep; the limit is %d", depth+height, s.cfg.MaxDepth)
	}
	moved := org
	moved.Parent = newParent
	var updates []engine.RelationshipUpdate
	for _, r := range s.orgTuples(org) {
		updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
	}
	for _, r := range s.orgTuples(moved) {
		updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
	}
	return org, newParent, orgs, dedupe(updates), nil
}

// MoveOrganization re-parents an organization. The impact (who gains or loses
// which organization permission across the moved subtree) is computed in a
// scratch engine first; with DryRun nothing is written.
func (s *Service) MoveOrganization(ctx context.Context, p Principal, ref string, in MoveOrg) (MoveResult, error) {
	if in.Parent == nil {
		return MoveResult{}, trellis.Invalid("parent", "is required: the new parent's id or slug (\"\" moves to the top level)")
	}
	var org store.Org
	var newParent string
	var orgs []store.Org
	var updates []engine.RelationshipUpdate
	if err := s.read(ctx, func(tx store.Tx) error {
		var err error
		org, newParent, orgs, updates, err = s.planMove(ctx, tx, p, ref, in)
		return err
	}); err != nil {
		return MoveResult{}, err
	}
	res := MoveResult{Organization: org.ID, DryRun: in.DryRun}
	if org.Parent != "" {
		res.From = &org.Parent
	}
	if newParent != "" {
		res.To = &newParent
	}
	impact, err := s.impact(ctx, orgs, updates)
	if err != nil {
		return MoveResult{}, err
	}
	res.Impact = impact
	if in.DryRun || newParent == org.Parent {
		return res, nil
	}
	err = s.run(ctx, p, "organization.move", func(tx store.Tx, o *op) error {
		cur, np, _, ups, err := s.planMove(ctx, tx, p, ref, in)
		if err != nil {
			return err
		}
		old := cur.Parent
		cur.Parent, cur.UpdatedAt = np, o.now
		if err := tx.UpdateOrg(ctx, cur); err != nil {
			return err
		}
		o.updates = ups
		details := map[string]any{"from": old, "to": np, "gained": impact.Totals.Gained, "lost": impact.Totals.Lost}
		o.record(cur.ID, "organization.move", "organization:"+cur.ID, details)
		for _, side := range []string{old, np} {
			if side != "" {
				o.record(side, "organization.move", "organization:"+cur.ID, details)
			}
		}
		return nil
	})
	res.Applied = err == nil
	return res, err
}

// impact compares, for each organization of orgs and each organization
// permission, the users who hold it now and after updates, which are applied
// to a scratch engine loaded with the system relationships.
func (s *Service) impact(ctx context.Context, orgs []store.Org, updates []engine.RelationshipUpdate) (Impact, error) {
	var out Impact
	out.Gained, out.Lost = []AccessChange{}, []AccessChange{}
	text, err := s.schemaText(ctx)
	if err != nil {
		return out, err
	}
	var rels []engine.Relationship
	for _, t := range systemTypes {
		found, err := engine.ReadAll(ctx, s.graph, engine.RelationshipFilter{ResourceType: t}, moveMaxRelationships-len(rels))
		if err != nil {
			return out, err
		}
		if rels = append(rels, found...); len(rels) >= moveMaxRelationships {
			break
		}
	}
	if len(rels) >= moveMaxRelationships {
		out.Truncated = true
	}
	scratch, stop, err := engine.NewScratch(ctx, text, rels)
	if err != nil {
		return out, err
	}
	defer stop()
	if len(updates) > 0 {
		if _, err := scratch.WriteRelationships(ctx, updates); err != nil {
			return out, err
		}
	}
	if len(orgs) > moveMaxOrgs {
		orgs, out.Truncated = orgs[:moveMaxOrgs], true
	}
	out.Totals.Organizations = len(orgs)
	for _, o := range orgs {
		for _, perm := range s.catalogue {
			before, err := usersWith(ctx, s.graph, o.ID, perm)
			if err != nil {
				return out, err
			}
			after, err := usersWith(ctx, scratch, o.ID, perm)
			if err != nil {
				return out, err
			}
			for _, u := range after {
				if !slices.Contains(before, u) {
					out.Totals.Gained++
					if len(out.Gained) < moveMaxListed {
						out.Gained = append(out.Gained, AccessChange{Subject: "user:" + u, Organization: o.ID, Permission: perm})
					}
				}
			}
			for _, u := range before {
				if !slices.Contains(after, u) {
					out.Totals.Lost++
					if len(out.Lost) < moveMaxListed {
						out.Lost = append(out.Lost, AccessChange{Subject: "user:" + u, Organization: o.ID, Permission: perm})
					}
				}
			}
		}
	}
	return out, nil
}

func usersWith(ctx context.Context, g engine.Engine, org, perm string) ([]string, error) {
	found, err := g.LookupSubjects(ctx, engine.LookupSubjectsRequest{
		Resource: orgRef(org), Permission: perm, SubjectType: "user", Consistency: engine.Consistency{Mode: engine.FullyConsistent},
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range found {
		if f.ID != "*" && f.Permissionship == engine.HasPermission {
			out = append(out, f.ID)
		}
	}
	slices.Sort(out)
	return out, nil
}
