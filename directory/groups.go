package directory

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Group is a group as clients see it.
type Group struct {
	ID           string    `json:"id"`
	Organization string    `json:"organization"`
	Name         string    `json:"name"`
	Description  string    `json:"description,omitempty"`
	Roles        []string  `json:"roles"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// GroupInput is the body of POST/PATCH …/groups.
type GroupInput struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Roles       *[]string `json:"roles"`
}

// GroupMember is a member of a group: a user or a nested group.
type GroupMember struct {
	Type    string    `json:"type"` // user | group
	ID      string    `json:"id"`
	AddedAt time.Time `json:"addedAt"`
}

func groupView(g store.Group) Group {
	roles := g.Roles
	if roles == nil {
		roles = []string{}
	}
	return Group{ID: g.ID, Organization: g.Org, Name: g.Name, Description: g.Description, Roles: roles, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

func groupRef(id string) engine.ObjectRef { return engine.ObjectRef{Type: "group", ID: id} }

func groupMembers(id string) engine.SubjectRef {
	return engine.SubjectRef{Object: groupRef(id), Relation: "member"}
}

// groupTuples place a group in its organization and grant its roles to its members.
func (s *Service) groupTuples(ctx context.Context, tx store.Tx, org store.Org, g store.Group) ([]resolved, []engine.Relationship, error) {
	roles, err := s.resolveRoles(ctx, tx, org, g.Roles, "roles")
	if err != nil {
		return nil, nil, err
	}
	for i, r := range roles {
		if r.key == RoleOwner {
			return nil, nil, trellis.Invalid("roles", "roles[%d]: owner is held by users and service accounts only", i)
		}
	}
	out := []engine.Relationship{rel(groupRef(g.ID), "org", subj("organization", org.ID))}
	return roles, append(out, grantTuples(org.ID, groupMembers(g.ID), roles)...), nil
}

// groupFor resolves org, requiring manage_members, and one of its groups.
func (s *Service) groupFor(ctx context.Context, tx store.Tx, p Principal, ref, id string) (store.Org, store.Group, error) {
	org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
	if err != nil {
		return org, store.Group{}, err
	}
	g, err := orgGroup(ctx, tx, org, id)
	return org, g, err
}

// groupForOp is groupFor for an operation runInTenant confined (orgForOp).
func (s *Service) groupForOp(ctx context.Context, tx store.Tx, o *op, ref, id string) (store.Org, store.Group, error) {
	org, err := s.orgForOp(ctx, tx, o, ref, permManageMembers)
	if err != nil {
		return org, store.Group{}, err
	}
	g, err := orgGroup(ctx, tx, org, id)
	return org, g, err
}

// orgGroup resolves a group of org; another organization's group is not found.
func orgGroup(ctx context.Context, tx store.Tx, org store.Org, id string) (store.Group, error) {
	g, err := tx.GetGroup(ctx, id)
	if err == nil && g.Org != org.ID {
		return store.Group{}, notFound("group", id)
	}
	return g, err
}

// CreateGroup creates a group holding roles.
func (s *Service) CreateGroup(ctx context.Context, p Principal, ref string, in GroupInput) (Group, error) {
	if in.Name == nil {
		return Group{}, trellis.Invalid("name", "is required")
	}
	name, err := validName("name", *in.Name)
	if err != nil {
		return Group{}, err
	}
	var out Group
	err = s.run(ctx, p, "group.create", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		g := store.Group{ID: newID("grp"), Org: org.ID, Name: name, Roles: []string{}, CreatedAt: o.now, UpdatedAt: o.now}
		if in.Description != nil {
			g.Description = *in.Description
		}
		if in.Roles != nil {
			g.Roles = dedupeStrings(*in.Roles)
		}
		roles, tuples, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(roles), "roles"); err != nil {
			return err
		}
		if err := tx.InsertGroup(ctx, g); err != nil {
			return err
		}
		o.touch(tuples...)
		o.record(org.ID, "group.create", "group:"+g.ID, map[string]any{"name": g.Name, "roles": g.Roles})
		out = groupView(g)
		return nil
	})
	return out, err
}

// ListGroups lists an organization's groups.
func (s *Service) ListGroups(ctx context.Context, p Principal, ref string) ([]Group, error) {
	out := []Group{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		gs, err := tx.ListGroups(ctx, org.ID)
		for _, g := range gs {
			out = append(out, groupView(g))
		}
		return err
	})
	return out, err
}

// GetGroup returns one group.
func (s *Service) GetGroup(ctx context.Context, p Principal, ref, id string) (Group, error) {
	var out Group
	err := s.read(ctx, func(tx store.Tx) error {
		_, g, err := s.groupFor(ctx, tx, p, ref, id)
		out = groupView(g)
		return err
	})
	return out, err
}

// UpdateGroup renames a group or changes its roles.
func (s *Service) UpdateGroup(ctx context.Context, p Principal, ref, id string, in GroupInput) (Group, error) {
	var out Group
	err := s.run(ctx, p, "group.update", func(tx store.Tx, o *op) error {
		org, g, err := s.groupFor(ctx, tx, p, ref, id)
		if err != nil {
			return err
		}
		oldRoles, before, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if g.Name, err = validName("name", *in.Name); err != nil {
				return err
			}
		}
		if in.Description != nil {
			g.Description = *in.Description
		}
		if in.Roles != nil {
			g.Roles = dedupeStrings(*in.Roles)
		}
		roles, after, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(changedRoles(oldRoles, roles)), "roles"); err != nil {
			return err
		}
		g.UpdatedAt = o.now
		if err := tx.UpdateGroup(ctx, g); err != nil {
			return err
		}
		o.replace(before, after)
		o.record(org.ID, "group.update", "group:"+g.ID, map[string]any{"name": g.Name, "roles": g.Roles})
		out = groupView(g)
		return nil
	})
	return out, err
}

// DeleteGroup removes a group; what it granted goes with it.
func (s *Service) DeleteGroup(ctx context.Context, p Principal, ref, id string) error {
	return s.run(ctx, p, "group.delete", func(tx store.Tx, o *op) error {
		org, g, err := s.groupFor(ctx, tx, p, ref, id)
		if err != nil {
			return err
		}
		roles, _, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(roles), "roles"); err != nil {
			return err
		}
		if err := tx.DeleteGroup(ctx, g.ID); err != nil {
			return err
		}
		o.filters = append(o.filters,
			engine.RelationshipFilter{ResourceType: "group", ResourceID: g.ID},
			engine.RelationshipFilter{Subject: &engine.SubjectFilter{Type: "group", ID: g.ID}})
		o.record(org.ID, "group.delete", "group:"+g.ID, map[string]any{"name": g.Name})
		return nil
	})
}

// parseGroupMember reads a member path segment: a user id, or group:<id> for a nested group.
func parseGroupMember(member string) (kind, id string) {
	if id, ok := strings.CutPrefix(member, "group:"); ok {
		return "group", id
	}
	return "user", strings.TrimPrefix(member, "user:")
}

// PutGroupMember adds a user (a member of the organization) or a nested group
// of the same organization to a group. Nesting that would form a cycle is refused.
func (s *Service) PutGroupMember(ctx context.Context, p Principal, ref, id, member string) (GroupMember, error) {
	kind, mid := parseGroupMember(member)
	var out GroupMember
	err := s.runInTenant(ctx, p, "group.member_add", ref, func(tx store.Tx, o *op) error {
		org, g, err := s.groupForOp(ctx, tx, o, ref, id)
		if err != nil {
			return err
		}
		var tuple *engine.Relationship
		switch kind {
		case "user":
			m, err := tx.GetMembership(ctx, org.ID, mid)
			if errors.Is(err, trellis.ErrNotFound) {
				return trellis.Rule("not_a_member", "user %s is not a member of organization %s; add the membership first", mid, org.Slug)
			} else if err != nil {
				return err
			}
			if m.Status == store.StatusActive {
				r := rel(groupRef(g.ID), "member", subj("user", mid))
				tuple = &r
			}
		case "group":
			if _, err := orgGroup(ctx, tx, org, mid); errors.Is(err, trellis.ErrNotFound) {
				return trellis.Rule("unknown_group", "group %s is not a group of organization %s", mid, org.Slug)
			} else if err != nil {
				return err
			}
			if cyc, err := nests(ctx, tx, mid, g.ID); err != nil {
				return err
			} else if cyc {
				return trellis.Rule("cycle", "adding group %s to group %s would make a group contain itself", mid, g.ID)
			}
			r := rel(groupRef(g.ID), "member", groupMembers(mid))
			tuple = &r
		}
		if err := tx.PutGroupMember(ctx, store.GroupMember{Group: g.ID, Kind: kind, ID: mid, AddedAt: o.now}); err != nil {
			return err
		}
		if tuple != nil {
			o.touch(*tuple)
		}
		o.record(org.ID, "group.member_add", "group:"+g.ID, map[string]any{"member": kind + ":" + mid})
		out = GroupMember{Type: kind, ID: mid, AddedAt: o.now}
		return nil
	})
	return out, err
}

// nests reports whether group inner is, or transitively contains, group outer.
func nests(ctx context.Context, tx store.Tx, inner, outer string) (bool, error) {
	seen := map[string]bool{}
	queue := []string{inner}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		if g == outer {
			return true, nil
		}
		if seen[g] {
			continue
		}
		seen[g] = true
		ms, err := tx.GroupMembers(ctx, g)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Kind == "group" {
				queue = append(queue, m.ID)
			}
		}
	}
	return false, nil
}

// RemoveGroupMember removes a user or nested group from a group.
func (s *Service) RemoveGroupMember(ctx context.Context, p Principal, ref, id, member string) error {
	kind, mid := parseGroupMember(member)
	return s.runInTenant(ctx, p, "group.member_remove", ref, func(tx store.Tx, o *op) error {
		org, g, err := s.groupForOp(ctx, tx, o, ref, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteGroupMember(ctx, g.ID, kind, mid); err != nil {
			return err
		}
		if kind == "group" {
			o.delete(rel(groupRef(g.ID), "member", groupMembers(mid)))
		} else {
			o.delete(rel(groupRef(g.ID), "member", subj("user", mid)))
		}
		o.record(org.ID, "group.member_remove", "group:"+g.ID, map[string]any{"member": kind + ":" + mid})
		return nil
	})
}

// ListGroupMembers lists a group's direct members.
func (s *Service) ListGroupMembers(ctx context.Context, p Principal, ref, id string) ([]GroupMember, error) {
	out := []GroupMember{}
	err := s.read(ctx, func(tx store.Tx) error {
		_, g, err := s.groupFor(ctx, tx, p, ref, id)
		if err != nil {
			return err
		}
		ms, err := tx.GroupMembers(ctx, g.ID)
		for _, m := range ms {
			out = append(out, GroupMember{Type: m.Kind, ID: m.ID, AddedAt: m.AddedAt})
		}
		return err
	})
	return out, err
}
