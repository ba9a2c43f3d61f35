package directory

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Built-in roles map to organization relations of the system schema.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

var roleKeyPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Role is a role as clients see it: built-in or custom (permissions as data).
type Role struct {
	ID           string    `json:"id,omitempty"`
	Key          string    `json:"key"`
	Name         string    `json:"name"`
	Description  string    `json:"description,omitempty"`
	Permissions  []string  `json:"permissions"`
	Builtin      bool      `json:"builtin"`
	Organization string    `json:"organization,omitempty"` // where a custom role is defined
	Inherited    bool      `json:"inherited,omitempty"`    // defined on an ancestor
	CreatedAt    time.Time `json:"createdAt,omitzero"`
	UpdatedAt    time.Time `json:"updatedAt,omitzero"`
}

// RoleInput is the body of POST/PATCH …/roles.
type RoleInput struct {
	Key         string    `json:"key"`
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Permissions *[]string `json:"permissions"`
}

// resolved is one role of a membership, group or service account, resolved
// against the organization it applies in.
type resolved struct {
	key         string
	relation    string      // built-in: the organization relation it writes
	custom      *store.Role // custom: the role object bound through a role_binding
	permissions []string
}

func (s *Service) builtin(key string) (resolved, bool) {
	switch key {
	case RoleOwner, RoleAdmin:
		return resolved{key: key, relation: key, permissions: s.catalogue}, true
	case RoleMember:
		return resolved{key: key, relation: key, permissions: []string{permAccess}}, true
	}
	return resolved{}, false
}

// resolveRoles resolves role keys in org: built-in names, else the nearest
// custom role with that key defined on org or an ancestor.
func (s *Service) resolveRoles(ctx context.Context, tx store.Tx, org store.Org, keys []string, field string) ([]resolved, error) {
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return nil, err
	}
	return s.resolveOnPath(ctx, tx, org, path, keys, field)
}

// resolveOnPath is resolveRoles for org's path already read (s.path).
func (s *Service) resolveOnPath(ctx context.Context, tx store.Tx, org store.Org, path []string, keys []string, field string) ([]resolved, error) {
	var out []resolved
	seen := map[string]bool{}
	for i, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if r, ok := s.builtin(k); ok {
			out = append(out, r)
			continue
		}
		found := false
		for j := len(path) - 1; j >= 0 && !found; j-- {
			role, err := tx.GetRoleByKey(ctx, path[j], k)
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			out = append(out, resolved{key: k, custom: &role, permissions: role.Permissions})
			found = true
		}
		if !found {
			return nil, trellis.Invalid(fmt.Sprintf("%s[%d]", field, i), "no role %q in organization %s or its parents (built-in: owner, admin, member)", k, org.Slug)
		}
	}
	if org.Policy.DelegationRequired {
		for _, r := range out {
			if slices.Contains(r.permissions, permManage) {
				return nil, trellis.Rule("delegation_required", "%s: role %q administers organization %s, which has no administrators of its own (mandatory delegation): administer it through a delegation", field, r.key, org.Slug)
			}
		}
	}
	return out, nil
}

func permissionsOf(rs []resolved) []string {
	var out []string
	for _, r := range rs {
		for _, p := range r.permissions {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// changedRoles are the roles in a but not in b, plus those in b not in a.
func changedRoles(a, b []resolved) []resolved {
	has := func(list []resolved, k string) bool {
		return slices.ContainsFunc(list, func(r resolved) bool { return r.key == k })
	}
	var out []resolved
	for _, r := range a {
		if !has(b, r.key) {
			out = append(out, r)
		}
	}
	for _, r := range b {
		if !has(a, r.key) {
			out = append(out, r)
		}
	}
	return out
}

func bindingID(org, role string) string { return org + "|" + role }

// grantTuples are the relationships that give subject the roles in org.
func grantTuples(org string, subject engine.SubjectRef, roles []resolved) []engine.Relationship {
	var out []engine.Relationship
	for _, r := range roles {
		if r.custom == nil {
			out = append(out, rel(orgRef(org), r.relation, subject))
			continue
		}
		b := engine.ObjectRef{Type: "role_binding", ID: bindingID(org, r.custom.ID)}
		out = append(out,
			rel(b, "role", subj("role", r.custom.ID)),
			rel(orgRef(org), "binding", engine.SubjectRef{Object: b}),
			rel(b, "subject", subject))
	}
	return out
}

// bindingIDs lists the role bindings org may hold: one per custom role
// defined on org or an ancestor.
func (s *Service) bindingIDs(ctx context.Context, tx store.Tx, org store.Org) ([]string, error) {
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range path {
		roles, err := tx.ListRoles(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, r := range roles {
			out = append(out, bindingID(org.ID, r.ID))
		}
	}
	return out, nil
}

// roleTuples are the relationships of a custom role object: its organization
// and one grants_<permission> wildcard per permission it carries.
func roleTuples(r store.Role) []engine.Relationship {
	ref := engine.ObjectRef{Type: "role", ID: r.ID}
	out := []engine.Relationship{rel(ref, "org", subj("organization", r.Org))}
	for _, p := range r.Permissions {
		out = append(out, rel(ref, "grants_"+p, subj("user", "*")), rel(ref, "grants_"+p, subj("service_account", "*")))
	}
	return out
}

func (s *Service) validPermissions(perms []string) ([]string, error) {
	if len(perms) == 0 {
		return nil, trellis.Invalid("permissions", "at least one permission is required (one of %v)", s.catalogue)
	}
	var out []string
	for i, p := range perms {
		if !slices.Contains(s.catalogue, p) {
			return nil, trellis.Invalid(fmt.Sprintf("permissions[%d]", i), "%q is not a permission; the catalogue is %v", p, s.catalogue)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

func roleView(r store.Role, from string) Role {
	return Role{ID: r.ID, Key: r.Key, Name: r.Name, Description: r.Description, Permissions: r.Permissions,
		Organization: r.Org, Inherited: r.Org != from, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// ListRoles lists the roles usable in org: built-in, its own and its ancestors'.
func (s *Service) ListRoles(ctx context.Context, p Principal, ref string) ([]Role, error) {
	out := []Role{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		for _, k := range []string{RoleOwner, RoleAdmin, RoleMember} {
			b, _ := s.builtin(k)
			out = append(out, Role{Key: k, Name: k, Permissions: b.permissions, Builtin: true})
		}
		path, err := s.path(ctx, tx, org)
		if err != nil {
			return err
		}
		for i := len(path) - 1; i >= 0; i-- {
			roles, err := tx.ListRoles(ctx, path[i])
			if err != nil {
				return err
			}
			for _, r := range roles {
				if !slices.ContainsFunc(out, func(x Role) bool { return x.Key == r.Key }) {
					out = append(out, roleView(r, org.ID))
				}
			}
		}
		return nil
	})
	return out, err
}

// GetRole returns one role usable in org by key.
func (s *Service) GetRole(ctx context.Context, p Principal, ref, key string) (Role, error) {
	roles, err := s.ListRoles(ctx, p, ref)
	if err != nil {
		return Role{}, err
	}
	for _, r := range roles {
		if r.Key == key {
			return r, nil
		}
	}
	return Role{}, notFound("role", key)
}

// CreateRole defines a custom role on org. The caller must hold every
// permission it puts in the role.
func (s *Service) CreateRole(ctx context.Context, p Principal, ref string, in RoleInput) (Role, error) {
	if !roleKeyPattern.MatchString(in.Key) {
		return Role{}, trellis.Invalid("key", "must be 1-63 lower-case letters, digits, '_' or '-', starting with a letter")
	}
	if _, ok := s.builtin(in.Key); ok {
		return Role{}, trellis.Invalid("key", "%q is a built-in role", in.Key)
	}
	name := in.Key
	if in.Name != nil {
		var err error
		if name, err = validName("name", *in.Name); err != nil {
			return Role{}, err
		}
	}
	if in.Permissions == nil {
		return Role{}, trellis.Invalid("permissions", "is required (one or more of %v)", s.catalogue)
	}
	perms, err := s.validPermissions(*in.Permissions)
	if err != nil {
		return Role{}, err
	}
	var out Role
	err = s.runInTenant(ctx, p, "role.create", ref, func(tx store.Tx, o *op) error {
		org, err := s.orgForOp(ctx, tx, o, ref, permManageRoles)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, perms, "permissions"); err != nil {
			return err
		}
		switch _, err := tx.GetRoleByKey(ctx, org.ID, in.Key); {
		case err == nil:
			return trellis.Conflict("role_exists", "organization %s already has a role %q", org.Slug, in.Key)
		case !errors.Is(err, trellis.ErrNotFound): // the lookup failed: not a free key
			return err
		}
		r := store.Role{ID: newID("rol"), Org: org.ID, Key: in.Key, Name: name, Permissions: perms, CreatedAt: o.now, UpdatedAt: o.now}
		if in.Description != nil {
			r.Description = *in.Description
		}
		if err := tx.InsertRole(ctx, r); err != nil {
			return err
		}
		o.touch(roleTuples(r)...)
		o.record(org.ID, "role.create", "role:"+r.ID, map[string]any{"key": r.Key, "permissions": perms})
		out = roleView(r, org.ID)
		return nil
	})
	return out, err
}

// customRole finds a custom role defined on org itself.
func customRole(ctx context.Context, tx store.Tx, org store.Org, key string) (store.Role, error) {
	r, err := tx.GetRoleByKey(ctx, org.ID, key)
	if errors.Is(err, trellis.ErrNotFound) {
		return r, notFound("role", key)
	}
	return r, err
}

// UpdateRole changes a custom role; new permissions must be held by the caller,
// and so must removed ones (no one rewrites a role above their own power).
func (s *Service) UpdateRole(ctx context.Context, p Principal, ref, key string, in RoleInput) (Role, error) {
	var out Role
	err := s.runInTenant(ctx, p, "role.update", ref, func(tx store.Tx, o *op) error {
		org, err := s.orgForOp(ctx, tx, o, ref, permManageRoles)
		if err != nil {
			return err
		}
		r, err := customRole(ctx, tx, org, key)
		if err != nil {
			return err
		}
		before := roleTuples(r)
		if in.Name != nil {
			if r.Name, err = validName("name", *in.Name); err != nil {
				return err
			}
		}
		if in.Description != nil {
			r.Description = *in.Description
		}
		if in.Permissions != nil {
			perms, err := s.validPermissions(*in.Permissions)
			if err != nil {
				return err
			}
			var changed []string
			for _, x := range append(slices.Clone(perms), r.Permissions...) {
				if slices.Contains(perms, x) != slices.Contains(r.Permissions, x) {
					changed = append(changed, x)
				}
			}
			if err := s.noEscalation(ctx, tx, p, org, changed, "permissions"); err != nil {
				return err
			}
			r.Permissions = perms
		}
		r.UpdatedAt = o.now
		if err := tx.UpdateRole(ctx, r); err != nil {
			return err
		}
		o.replace(before, roleTuples(r))
		o.record(org.ID, "role.update", "role:"+r.ID, map[string]any{"key": r.Key, "permissions": r.Permissions})
		out = roleView(r, org.ID)
		return nil
	})
	return out, err
}

// DeleteRole removes a custom role that nothing in org's subtree still holds.
func (s *Service) DeleteRole(ctx context.Context, p Principal, ref, key string) error {
	return s.runInTenant(ctx, p, "role.delete", ref, func(tx store.Tx, o *op) error {
		org, err := s.orgForOp(ctx, tx, o, ref, permManageRoles)
		if err != nil {
			return err
		}
		r, err := customRole(ctx, tx, org, key)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, r.Permissions, "role"); err != nil {
			return err
		}
		if where, err := roleInUse(ctx, tx, org, key); err != nil {
			return err
		} else if where != "" {
			return trellis.Conflict("role_in_use", "role %q is still held by %s; remove it there first", key, where)
		}
		orgs, err := subtree(ctx, tx, org)
		if err != nil {
			return err
		}
		for _, x := range orgs {
			o.filters = append(o.filters, engine.RelationshipFilter{ResourceType: "role_binding", ResourceID: bindingID(x.ID, r.ID)})
		}
		o.filters = append(o.filters,
			engine.RelationshipFilter{ResourceType: "role", ResourceID: r.ID},
			engine.RelationshipFilter{Subject: &engine.SubjectFilter{Type: "role", ID: r.ID}})
		if err := tx.DeleteRole(ctx, r.ID); err != nil {
			return err
		}
		o.record(org.ID, "role.delete", "role:"+r.ID, map[string]any{"key": r.Key})
		return nil
	})
}

// roleInUse names a member, group or service account in org's subtree that
// holds key, or "" when none does.
func roleInUse(ctx context.Context, tx store.Tx, org store.Org, key string) (string, error) {
	orgs, err := subtree(ctx, tx, org)
	if err != nil {
		return "", err
	}
	for _, x := range orgs {
		holder, err := roleHolder(ctx, tx, x.ID, func(roles []string) (bool, error) { return slices.Contains(roles, key), nil })
		if err != nil {
			return "", err
		}
		if holder != "" {
			return holder + " in " + x.Slug, nil
		}
	}
	return "", nil
}

// roleHolder names the first member, group or service account of org whose
// roles satisfy holds ("user:<id>", "group:<id>", "service_account:<id>"),
// or "" when none does.
func roleHolder(ctx context.Context, tx store.Tx, org string, holds func(roles []string) (bool, error)) (string, error) {
	members, err := tx.ListMembers(ctx, org, store.Page{})
	if err != nil {
		return "", err
	}
	for _, m := range members {
		if ok, err := holds(m.Roles); err != nil || ok {
			return "user:" + m.User, err
		}
	}
	groups, err := tx.ListGroups(ctx, org)
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		if ok, err := holds(g.Roles); err != nil || ok {
			return "group:" + g.ID, err
		}
	}
	sas, err := tx.ListServiceAccounts(ctx, org)
	if err != nil {
		return "", err
	}
	for _, sa := range sas {
		if ok, err := holds(sa.Roles); err != nil || ok {
			return "service_account:" + sa.ID, err
		}
	}
	return "", nil
}
