package directory

import (
	"context"
	"errors"

	"slices"
	"strings"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Blast radius of directory changes (ADR 0017). A directory change is weighed
// by running the directory operation itself in plan mode: run executes the
// operation's body and authorizeEffects in a store transaction, captures the
// relationship updates and delete filters the operation would commit, and
// rolls the transaction back (errPlanned) before anything is audited, queued
// or applied. The translation from a change to tuples, and the authorization
// of it, are therefore those of the real endpoint: a caller who could not make
// the change gets the error the endpoint gives.

// errPlanned ends an operation run in plan mode once its updates are known.
var errPlanned = errors.New("directory: planned, not applied")

type planKey struct{}

// plan receives what an operation run in plan mode would write.
type plan struct {
	updates []engine.RelationshipUpdate
	filters []engine.RelationshipFilter
}

func withPlan(ctx context.Context) (context.Context, *plan) {
	pl := &plan{}
	return context.WithValue(ctx, planKey{}, pl), pl
}

func planOf(ctx context.Context) *plan {
	pl, _ := ctx.Value(planKey{}).(*plan)
	return pl
}

// DirectoryChange is a directory operation a blast radius weighs without
// making it: exactly one field is set. Each takes the fields of the
// endpoint that makes it (path parameters included).
type DirectoryChange struct {
	// PATCH /v1/organizations/{org}/groups/{group} with the role added to (or
	// removed from) the group's roles
	AddGroupRole    *GroupRoleChange `json:"addGroupRole,omitempty"`
	RemoveGroupRole *GroupRoleChange `json:"removeGroupRole,omitempty"`
	// POST /v1/organizations/{org}/move
	MoveOrganization *MoveChange `json:"moveOrganization,omitempty"`
	// DELETE /v1/delegations/{id}
	RevokeDelegation *DelegationChange `json:"revokeDelegation,omitempty"`
	// PUT and DELETE /v1/organizations/{org}/members/{user}
	PutMember    *MemberChange `json:"putMember,omitempty"`
	RemoveMember *MemberChange `json:"removeMember,omitempty"`
	// PUT and DELETE /v1/organizations/{org}/groups/{group}/members/{member}
	AddGroupMember    *GroupMemberChange `json:"addGroupMember,omitempty"`
	RemoveGroupMember *GroupMemberChange `json:"removeGroupMember,omitempty"`
}

// GroupRoleChange names a role key to add to or remove from a group.
type GroupRoleChange struct {
	Organization string `json:"organization"`
	Group        string `json:"group"`
	Role         string `json:"role"`
}

// MoveChange re-parents an organization ("" parent: to the top level).
type MoveChange struct {
	Organization string  `json:"organization"`
	Parent       *string `json:"parent"`
}

// DelegationChange names a delegation.
type DelegationChange struct {
	Delegation string `json:"delegation"`
}

// MemberChange is a membership put (roles, status) or removal.
type MemberChange struct {
	Organization string   `json:"organization"`
	User         string   `json:"user"`
	Roles        []string `json:"roles,omitempty"`
	Status       string   `json:"status,omitempty"`
}

// GroupMemberChange is a group member ("user:…", a bare user id, or "group:…").
type GroupMemberChange struct {
	Organization string `json:"organization"`
	Group        string `json:"group"`
	Member       string `json:"member"`
}

// Empty reports whether no change is set.
func (c DirectoryChange) Empty() bool { return c.form() == "" }

// form is the name of the field set ("" none); forms counts them.
func (c DirectoryChange) form() string {
	names := c.forms()
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (c DirectoryChange) forms() []string {
	var out []string
	for name, set := range map[string]bool{
		"addGroupRole": c.AddGroupRole != nil, "removeGroupRole": c.RemoveGroupRole != nil,
		"moveOrganization": c.MoveOrganization != nil, "revokeDelegation": c.RevokeDelegation != nil,
		"putMember": c.PutMember != nil, "removeMember": c.RemoveMember != nil,
		"addGroupMember": c.AddGroupMember != nil, "removeGroupMember": c.RemoveGroupMember != nil,
	} {
		if set {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func required(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return trellis.Invalid(field, "is required")
	}
	return nil
}

// PlanChange returns the relationship updates change would make, as the
// directory operation making it computes them and with its authorization
// (its errors are the endpoint's), without making it. Delete filters are
// expanded to the relationships they match now, as the relay would.
func (s *Service) PlanChange(ctx context.Context, p Principal, c DirectoryChange) ([]engine.RelationshipUpdate, error) {
	forms := c.forms()
	switch {
	case len(forms) == 0:
		return nil, trellis.Invalid("body", "one change is required: updates, addGroupRole, removeGroupRole, moveOrganization, revokeDelegation, putMember, removeMember, addGroupMember or removeGroupMember")
	case len(forms) > 1:
		return nil, trellis.Invalid(forms[1], "only one change per request (%s is set too)", forms[0])
	}
	ctx, pl := withPlan(ctx)
	if err := s.makeChange(ctx, p, c); err != nil && !errors.Is(err, errPlanned) {
		return nil, err
	}
	// no errPlanned: the operation had nothing to write (a move to the same parent)
	return s.relay.expand(ctx, pl.filters, pl.updates)
}

// makeChange makes change c through the endpoint's operation (in plan mode
// when ctx carries a plan). c holds exactly one change.
func (s *Service) makeChange(ctx context.Context, p Principal, c DirectoryChange) error {
	var err error
	switch f := c.form(); f {
	case "addGroupRole", "removeGroupRole":
		in := c.AddGroupRole
		if in == nil {
			in = c.RemoveGroupRole
		}
		if err := errors.Join(required(f+".organization", in.Organization), required(f+".group", in.Group), required(f+".role", in.Role)); err != nil {
			return firstErr(err)
		}
		var g Group
		if g, err = s.GetGroup(ctx, p, in.Organization, in.Group); err != nil {
			break
		}
		roles := slices.DeleteFunc(slices.Clone(g.Roles), func(r string) bool { return r == in.Role })
		if f == "addGroupRole" {
			roles = append(roles, in.Role)
		}
		_, err = s.UpdateGroup(ctx, p, in.Organization, in.Group, GroupInput{Roles: &roles})
	case "moveOrganization":
		in := c.MoveOrganization
		if err := required(f+".organization", in.Organization); err != nil {
			return err
		}
		if in.Parent == nil {
			return trellis.Invalid(f+".parent", "is required: the new parent's id or slug (\"\" moves to the top level)")
		}
		_, err = s.MoveOrganization(ctx, p, in.Organization, MoveOrg{Parent: in.Parent})
	case "revokeDelegation":
		if err := required(f+".delegation", c.RevokeDelegation.Delegation); err != nil {
			return err
		}
		_, err = s.RevokeDelegation(ctx, p, c.RevokeDelegation.Delegation)
	case "putMember", "removeMember":
		in := c.PutMember
		if in == nil {
			in = c.RemoveMember
		}
		if err := errors.Join(required(f+".organization", in.Organization), required(f+".user", in.User)); err != nil {
			return firstErr(err)
		}
		if f == "putMember" {
			_, _, err = s.PutMember(ctx, p, in.Organization, in.User, PutMember{Roles: in.Roles, Status: in.Status})
		} else {
			err = s.RemoveMember(ctx, p, in.Organization, strings.TrimPrefix(in.User, "user:"))
		}
	case "addGroupMember", "removeGroupMember":
		in := c.AddGroupMember
		if in == nil {
			in = c.RemoveGroupMember
		}
		if err := errors.Join(required(f+".organization", in.Organization), required(f+".group", in.Group), required(f+".member", in.Member)); err != nil {
			return firstErr(err)
		}
		if f == "addGroupMember" {
			_, err = s.PutGroupMember(ctx, p, in.Organization, in.Group, in.Member)
		} else {
			err = s.RemoveGroupMember(ctx, p, in.Organization, in.Group, in.Member)
		}
	}
	return err
}

// firstErr is the first of errors.Join's errors.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
}

// BlastRadiusOf is the blast radius of a directory change: the updates the
// operation would make (PlanChange: its authorization, its errors), weighed
// like raw updates (BlastRadius). The caller must also be an access reviewer
// (provider, platform auditor, or view_audit on an organization); triples
// outside the organizations it audits are counted, not listed.
func (s *Service) BlastRadiusOf(ctx context.Context, p Principal, c DirectoryChange) (BlastRadius, error) {
	out := BlastRadius{Gained: []Triple{}, Lost: []Triple{}}
	updates, err := s.PlanChange(ctx, p, c)
	if err != nil {
		return out, err
	}
	var sc *accessScope
	if err := s.read(ctx, func(tx store.Tx) error {
		sc, err = s.accessScope(ctx, tx, p)
		return err
	}); err != nil {
		return out, err
	}
	if len(updates) == 0 {
		return out, nil
	}
	return s.blast(ctx, sc, updates)
}
