package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// SCIM provisioning writes the graph here, through run like every directory
// write: a provisioned user is a member of the organization (active: false
// suspends the membership, deletion removes it), a provisioned group is a
// group of the organization, and the organization's mappings put roles on
// groups (source scim: roles set by hand are never taken away). The scim
// package speaks the protocol and keeps each resource's representation (Doc)
// opaque to the directory.

// ErrSCIMVersion: the resource changed since the version the caller named (412).
var ErrSCIMVersion = errors.New("the resource was modified since the version given (If-Match)")

// AnyVersion is the version argument that matches any stored version.
const AnyVersion int64 = -1

// SCIMRecord is a provisioned user or group.
type SCIMRecord struct {
	ID         string
	Name       string
	ExternalID string
	Version    int64
	Doc        []byte
	Active     bool
	Members    []string
	Roles      []string // roles provisioning put on a group (source scim)
	Pending    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func recordView(r store.SCIMResource) SCIMRecord {
	return SCIMRecord{ID: r.ID, Name: r.Name, ExternalID: r.ExternalID, Version: r.Version, Doc: r.Doc, Active: r.Active,
		Members: r.Members, Roles: r.Roles, Pending: r.Pending, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// SCIMUserState is what the identity provider wants of a user.
type SCIMUserState struct {
	UserName, ExternalID, Email, DisplayName string
	Active                                   bool
	Doc                                      []byte
}

// SCIMGroupState is what the identity provider wants of a group; Members are
// the ids of provisioned users or of groups of the organization.
type SCIMGroupState struct {
	DisplayName, ExternalID string
	Members                 []string
	Doc                     []byte
}

func validSCIMName(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", trellis.Invalid(field, "is required")
	case len(v) > 255:
		return "", trellis.Invalid(field, "must be at most 255 characters")
	}
	return v, nil
}

func (in *SCIMUserState) validate() error {
	var err error
	if in.UserName, err = validSCIMName("userName", in.UserName); err != nil {
		return err
	}
	if len(in.ExternalID) > 255 {
		return trellis.Invalid("externalId", "must be at most 255 characters")
	}
	if in.Email == "" && strings.Contains(in.UserName, "@") {
		in.Email = in.UserName
	}
	if in.Email, err = NormalizeEmail("emails", in.Email); err != nil {
		return err
	}
	if in.DisplayName == "" {
		in.DisplayName = in.Email[:strings.IndexByte(in.Email, '@')]
	}
	in.DisplayName, err = validName("displayName", in.DisplayName)
	return err
}

// scimRow reads a provisioned resource of org, checking the version asked for.
func scimRow(ctx context.Context, tx store.Tx, org, kind, id string, version int64) (store.SCIMResource, error) {
	r, err := tx.GetSCIMResource(ctx, org, kind, id)
	if errors.Is(err, trellis.ErrNotFound) {
		return r, notFound(kind, id)
	} else if err != nil {
		return r, err
	}
	if version != AnyVersion && r.Version != version {
		return r, ErrSCIMVersion
	}
	return r, nil
}

// nameFree refuses a name another resource of the organization holds.
func nameFree(ctx context.Context, tx store.Tx, o *op, org, kind, name, id string) error {
	other, err := o.scimByName(ctx, tx, org, kind, name)
	switch {
	case errors.Is(err, trellis.ErrNotFound):
		return nil
	case err != nil:
		return err
	case other.ID != id:
		field := "userName"
		if kind == store.SCIMGroup {
			field = "displayName"
		}
		return trellis.Conflict("uniqueness", "%s %q is already provisioned in this organization", field, name)
	}
	return nil
}

// SCIMPutUser provisions a user (id "" creates one) or replaces what the
// provider wants of it. A new user links to an existing Trellis user with its
// email only when the organization (or an ancestor) verified the email's
// domain or the user is already a member; otherwise that email is a
// uniqueness conflict. The user row itself (name, email) changes only while
// the user belongs to this organization alone.
func (s *Service) SCIMPutUser(ctx context.Context, p Principal, ref, id string, in SCIMUserState, version int64) (SCIMRecord, bool, error) {
	if err := in.validate(); err != nil {
		return SCIMRecord{}, false, err
	}
	var out SCIMRecord
	ctx = store.DeferWrites(ctx) // the rows go with the tail's first round trip
	err := s.run(ctx, p, "scim.user.put", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		o.scimOp(org.ID)
		out, err = s.scimPutUser(ctx, tx, o, org, id, in, version)
		return err
	})
	return out, id == "", err
}

// scimPutUser is SCIMPutUser's work inside its operation (or a batch's step).
func (s *Service) scimPutUser(ctx context.Context, tx store.Tx, o *op, org store.Org, id string, in SCIMUserState, version int64) (SCIMRecord, error) {
	created := id == ""
	var row store.SCIMResource
	var u store.User
	var err error
	if !created {
		if row, err = scimRow(ctx, tx, org.ID, store.SCIMUser, id, version); err != nil {
			return SCIMRecord{}, err
		}
		if u, err = tx.GetUser(ctx, id); err != nil {
			return SCIMRecord{}, err
		}
	}
	if err := nameFree(ctx, tx, o, org.ID, store.SCIMUser, in.UserName, id); err != nil {
		return SCIMRecord{}, err
	}
	if created {
		if u, err = s.scimLinkOrCreate(ctx, tx, o, org, in); err != nil {
			return SCIMRecord{}, err
		}
		row = store.SCIMResource{Org: org.ID, Kind: store.SCIMUser, ID: u.ID, CreatedAt: o.now}
	}
	changes, err := s.scimApplyUser(ctx, tx, o, org, u, in.Active)
	if err != nil {
		return SCIMRecord{}, err
	}
	if err := s.scimUpdateUserRow(ctx, tx, o, org, u, in); err != nil {
		return SCIMRecord{}, err
	}
	row.Name, row.ExternalID, row.Doc, row.Active, row.Pending = in.UserName, in.ExternalID, in.Doc, in.Active, ""
	row.Version++
	row.UpdatedAt = o.now
	if err := tx.PutSCIMResource(ctx, row); err != nil {
		return SCIMRecord{}, err
	}
	o.forgetResource(store.SCIMUser, row.ID, row.Name, created)
	action := "scim.user.update"
	if created {
		action = "scim.user.create"
	}
	o.record(org.ID, action, "user:"+u.ID, map[string]any{"userName": in.UserName, "active": in.Active, "changes": changes})
	return recordView(row), nil
}

// scimLinkOrCreate finds the Trellis user a new SCIM user is, or creates it.
func (s *Service) scimLinkOrCreate(ctx context.Context, tx store.Tx, o *op, org store.Org, in SCIMUserState) (store.User, error) {
	u, err := o.userByEmail(ctx, tx, in.Email)
	if errors.Is(err, trellis.ErrNotFound) {
		if err := s.emailDomainOpen(ctx, tx, o, org, in.Email); err != nil {
			return u, err
		}
		o.forgetEmail(in.Email)
		return s.insertFreshUser(ctx, tx, o, in.Email, in.DisplayName, "")
	} else if err != nil {
		return u, err
	}
	if _, err := tx.GetSCIMResource(ctx, org.ID, store.SCIMUser, u.ID); err == nil {
		return u, trellis.Conflict("uniqueness", "a user with email %s is already provisioned in this organization", in.Email)
	} else if !errors.Is(err, trellis.ErrNotFound) {
		return u, err
	}
	linkable := false
	if _, err := o.membership(ctx, tx, org.ID, u.ID); err == nil {
		linkable = true
	} else if !errors.Is(err, trellis.ErrNotFound) {
		return u, err
	}
	if !linkable {
		_, domain, _ := strings.Cut(u.Email, "@")
		owner, err := s.domainOwner(ctx, tx, o, domain)
		if err != nil {
			return u, err
		}
		if owner != "" {
			path, err := s.pathOf(ctx, tx, o, org)
			if err != nil {
				return u, err
			}
			linkable = slices.Contains(path, owner)
		}
	}
	if !linkable {
		return u, trellis.Conflict("uniqueness", "email %s belongs to a user this organization cannot provision: its domain is not verified by the organization", in.Email)
	}
	return u, nil
}

// emailDomainOpen refuses an email whose domain another organization (not
// org or an ancestor) verified: provisioning must not plant a user that
// organization's own provisioning would later link as one of its people.
func (s *Service) emailDomainOpen(ctx context.Context, tx store.Tx, o *op, org store.Org, email string) error {
	_, domain, _ := strings.Cut(email, "@")
	owner, err := s.domainOwner(ctx, tx, o, domain)
	if err != nil || owner == "" {
		return err
	}
	path, err := s.pathOf(ctx, tx, o, org)
	if err != nil {
		return err
	}
	if !slices.Contains(path, owner) {
		return trellis.Invalid("emails", "the domain of %s is verified by another organization", email)
	}
	return nil
}

// domainOwner is the id of the organization that verified domain ("" when
// none), asked once per operation: a batch provisions many users of one domain.
func (s *Service) domainOwner(ctx context.Context, tx store.Tx, o *op, domain string) (string, error) {
	key := strings.ToLower(domain)
	if owner, ok := o.domains[key]; ok {
		return owner, nil
	}
	org, err := tx.OrgByVerifiedDomain(ctx, domain)
	if errors.Is(err, trellis.ErrNotFound) {
		org, err = store.Org{}, nil
	} else if err != nil {
		return "", err
	}
	if o.domains == nil {
		o.domains = map[string]string{}
	}
	o.domains[key] = org.ID
	return org.ID, nil
}

// scimApplyUser makes the user's membership what the provider wants: present,
// active or suspended. Suspension takes every tuple the membership wrote
// (roles, group places), so the next check denies.
func (s *Service) scimApplyUser(ctx context.Context, tx store.Tx, o *op, org store.Org, u store.User, active bool) ([]string, error) {
	status := store.StatusSuspended
	if active {
		status = store.StatusActive
	}
	var m store.Membership
	err := notFound("membership", u.ID) // a user this operation created has none
	if !o.fresh["user:"+u.ID] {
		m, err = o.membership(ctx, tx, org.ID, u.ID)
	}
	var before []engine.Relationship
	var changes []string
	switch {
	case errors.Is(err, trellis.ErrNotFound):
		m = store.Membership{Org: org.ID, User: u.ID, Roles: []string{RoleMember}, JoinedAt: o.now, AuthenticatedVia: "scim"}
		changes = append(changes, "membership added ("+status+")")
	case err != nil:
		return nil, err
	default:
		if before, err = s.memberTuples(ctx, tx, org, m); err != nil {
			return nil, err
		}
		if m.Status == status {
			return nil, nil
		}
		changes = append(changes, "membership "+m.Status+" → "+status)
	}
	m.Status, m.UpdatedAt = status, o.now
	if err := tx.PutMembership(ctx, m); err != nil {
		return nil, err
	}
	o.forgetMember(u.ID)
	if o.fresh["user:"+u.ID] {
		ctx = context.WithValue(ctx, freshUserKey{}, u.ID)
	}
	after, err := s.memberTuples(ctx, tx, org, m)
	if err != nil {
		return nil, err
	}
	o.replace(before, after)
	return changes, nil
}

// scimUpdateUserRow changes the user's name and email, when it belongs to
// this organization alone: provisioning never changes a user through another.
func (s *Service) scimUpdateUserRow(ctx context.Context, tx store.Tx, o *op, org store.Org, u store.User, in SCIMUserState) error {
	if u.Name == in.DisplayName && u.Email == in.Email {
		return nil
	}
	ms, err := tx.UserMemberships(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Org != org.ID {
			return nil
		}
	}
	if u.Email != in.Email {
		if err := s.emailDomainOpen(ctx, tx, o, org, in.Email); err != nil {
			return err
		}
		if other, err := o.userByEmail(ctx, tx, in.Email); err == nil && other.ID != u.ID {
			return trellis.Conflict("uniqueness", "email %s is in use by another user", in.Email)
		} else if err != nil && !errors.Is(err, trellis.ErrNotFound) {
			return err
		}
	}
	o.forgetEmail(u.Email, in.Email)
	u.Name, u.Email, u.UpdatedAt = in.DisplayName, in.Email, o.now
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	o.record(org.ID, "scim.user.profile", "user:"+u.ID, map[string]any{"email": u.Email, "name": u.Name})
	return nil
}

// SCIMDeleteUser removes the membership (its tuples, group places and so the
// checks it granted); the user remains, with any other membership it has.
func (s *Service) SCIMDeleteUser(ctx context.Context, p Principal, ref, id string, version int64) error {
	return s.run(ctx, p, "scim.user.delete", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		return s.scimDeleteUser(ctx, tx, o, org, id, version)
	})
}

func (s *Service) scimDeleteUser(ctx context.Context, tx store.Tx, o *op, org store.Org, id string, version int64) error {
	if _, err := scimRow(ctx, tx, org.ID, store.SCIMUser, id, version); err != nil {
		return err
	}
	if err := s.dropMembership(ctx, tx, o, org, id); err != nil {
		return err
	}
	if err := tx.DeleteSCIMResource(ctx, org.ID, store.SCIMUser, id); err != nil {
		return err
	}
	o.forgetResource(store.SCIMUser, id, "", false)
	o.record(org.ID, "scim.user.delete", "user:"+id, nil)
	return nil
}

// dropMembership removes a membership and the user's places in the
// organization's groups, if there is one.
func (s *Service) dropMembership(ctx context.Context, tx store.Tx, o *op, org store.Org, userID string) error {
	m, err := tx.GetMembership(ctx, org.ID, userID)
	if errors.Is(err, trellis.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var roles []resolved
	if m.Status == store.StatusActive { // only an active membership's roles are written
		if roles, err = s.resolveRoles(ctx, tx, org, m.Roles, "roles"); err != nil {
			return err
		}
	}
	return s.dropMembershipOf(ctx, tx, o, org, m, roles)
}

// dropMembershipOf is dropMembership for a membership and roles already read.
func (s *Service) dropMembershipOf(ctx context.Context, tx store.Tx, o *op, org store.Org, m store.Membership, roles []resolved) error {
	groups, err := groupsIn(ctx, tx, org, m.User)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := tx.DeleteGroupMember(ctx, g, "user", m.User); err != nil {
			return err
		}
	}
	if err := tx.DeleteMembership(ctx, org.ID, m.User); err != nil {
		return err
	}
	o.forgetMember(m.User)
	o.revoke(memberRels(org, m, roles, groups)...)
	return nil
}

// SCIMPutGroup provisions a group (id "" creates one) or replaces its name and
// members. Members the provider names that are not provisioned yet are kept
// pending (repair applies them later); the organization's mappings put their
// roles on the group.
func (s *Service) SCIMPutGroup(ctx context.Context, p Principal, ref, id string, in SCIMGroupState, version int64) (SCIMRecord, bool, error) {
	if err := in.validate(); err != nil {
		return SCIMRecord{}, false, err
	}
	var out SCIMRecord
	ctx = store.DeferWrites(ctx)
	err := s.run(ctx, p, "scim.group.put", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		o.scimOp(org.ID)
		out, err = s.scimPutGroup(ctx, tx, o, org, id, in, version)
		return err
	})
	return out, id == "", err
}

func (in *SCIMGroupState) validate() error {
	name, err := validName("displayName", in.DisplayName)
	if err != nil {
		return err
	}
	in.DisplayName = name
	if len(in.ExternalID) > 255 {
		return trellis.Invalid("externalId", "must be at most 255 characters")
	}
	in.Members = dedupeStrings(in.Members)
	return nil
}

func (s *Service) scimPutGroup(ctx context.Context, tx store.Tx, o *op, org store.Org, id string, in SCIMGroupState, version int64) (SCIMRecord, error) {
	created := id == ""
	var row store.SCIMResource
	var err error
	if !created {
		if row, err = scimRow(ctx, tx, org.ID, store.SCIMGroup, id, version); err != nil {
			return SCIMRecord{}, err
		}
	}
	if err := nameFree(ctx, tx, o, org.ID, store.SCIMGroup, in.DisplayName, id); err != nil {
		return SCIMRecord{}, err
	}
	var made *store.Group
	if created {
		g := store.Group{ID: newID("grp"), Org: org.ID, Name: in.DisplayName, Roles: []string{}, CreatedAt: o.now, UpdatedAt: o.now}
		if err := tx.InsertGroup(ctx, g); err != nil {
			return SCIMRecord{}, err
		}
		made = &g
		o.madeFresh("group", g.ID)
		o.touch(rel(groupRef(g.ID), "org", subj("organization", org.ID)))
		row = store.SCIMResource{Org: org.ID, Kind: store.SCIMGroup, ID: g.ID, CreatedAt: o.now}
		o.record(org.ID, "group.create", "group:"+g.ID, map[string]any{"name": g.Name, "source": "scim"})
	}
	row.Name, row.ExternalID, row.Doc, row.Members = in.DisplayName, in.ExternalID, in.Doc, in.Members
	changes, err := s.scimApplyGroup(ctx, tx, o, org, &row, made)
	if err != nil {
		return SCIMRecord{}, err
	}
	row.Version++
	row.UpdatedAt = o.now
	if err := tx.PutSCIMResource(ctx, row); err != nil {
		return SCIMRecord{}, err
	}
	o.forgetResource(store.SCIMGroup, row.ID, row.Name, created)
	action := "scim.group.update"
	if created {
		action = "scim.group.create"
	}
	o.record(org.ID, action, "group:"+row.ID, map[string]any{"displayName": row.Name, "changes": changes, "pending": row.Pending})
	return recordView(row), nil
}

// scimApplyGroup makes the Trellis group what row says: its name, its
// members (row.Members; unknown ones pending) and its mapped roles (row.Roles
// becomes the roles provisioning holds on it). It sets row.Pending. made is
// the group when this operation just created it (nil: read it).
func (s *Service) scimApplyGroup(ctx context.Context, tx store.Tx, o *op, org store.Org, row *store.SCIMResource, made *store.Group) ([]string, error) {
	var g store.Group
	if made != nil {
		g = *made
		g.Roles = slices.Clone(made.Roles)
	} else {
		var err error
		if g, err = orgGroup(ctx, tx, org, row.ID); err != nil {
			return nil, err
		}
	}
	var changes, pending []string
	// roles: the mapping's, beside those set by hand
	mapped, unresolved, err := s.mappedRoles(ctx, tx, o, org, row.Name, row.ExternalID, g.ID)
	if err != nil {
		return nil, err
	}
	pending = append(pending, unresolved...)
	var manual []string
	for _, r := range g.Roles {
		if !slices.Contains(row.Roles, r) {
			manual = append(manual, r)
		}
	}
	var scimRoles []string
	for _, r := range mapped {
		if !slices.Contains(manual, r) {
			scimRoles = append(scimRoles, r)
		}
	}
	roles := append(slices.Clone(manual), scimRoles...)
	if roles == nil {
		roles = []string{}
	}
	if g.Name != row.Name || !slices.Equal(g.Roles, roles) {
		_, before, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(g.Roles, roles) {
			changes = append(changes, fmt.Sprintf("roles %v → %v", g.Roles, roles))
		}
		g.Name, g.Roles, g.UpdatedAt = row.Name, roles, o.now
		_, after, err := s.groupTuples(ctx, tx, org, g)
		if err != nil {
			return nil, err
		}
		if err := tx.UpdateGroup(ctx, g); err != nil {
			return nil, err
		}
		o.replace(before, after)
	}
	row.Roles = scimRoles
	// members: only values not in the group yet are looked up
	type member struct{ kind, id string }
	var cur []store.GroupMember // a group this operation created has none yet
	if !o.fresh["group:"+g.ID] {
		if cur, err = tx.GroupMembers(ctx, g.ID); err != nil {
			return nil, err
		}
	}
	have := map[member]bool{}
	for _, m := range cur {
		have[member{m.Kind, m.ID}] = true
	}
	want := map[member]bool{}
	for _, v := range row.Members {
		if have[member{"user", v}] {
			want[member{"user", v}] = true
			continue
		}
		if have[member{"group", v}] {
			want[member{"group", v}] = true
			continue
		}
		kind, err := s.scimMemberKind(ctx, tx, o, org, v)
		if err != nil {
			return nil, err
		}
		if kind == "" {
			pending = append(pending, "member "+v+" is not provisioned")
			continue
		}
		want[member{kind, v}] = true
	}
	for _, m := range cur {
		k := member{m.Kind, m.ID}
		if want[k] {
			continue
		}
		if err := tx.DeleteGroupMember(ctx, g.ID, m.Kind, m.ID); err != nil {
			return nil, err
		}
		if m.Kind == "group" {
			o.delete(rel(groupRef(g.ID), "member", groupMembers(m.ID)))
		} else {
			o.delete(rel(groupRef(g.ID), "member", subj("user", m.ID)))
		}
		changes = append(changes, "member "+m.Kind+":"+m.ID+" removed")
	}
	for _, v := range row.Members {
		for _, kind := range []string{"user", "group"} {
			k := member{kind, v}
			if !want[k] || have[k] {
				continue
			}
			if kind == "group" {
				if cyc, err := nests(ctx, tx, v, g.ID); err != nil {
					return nil, err
				} else if cyc {
					pending = append(pending, "member group "+v+" would make a group contain itself")
					continue
				}
			}
			if err := tx.PutGroupMember(ctx, store.GroupMember{Group: g.ID, Kind: kind, ID: v, AddedAt: o.now}); err != nil {
				return nil, err
			}
			tuple, err := s.groupMemberTuple(ctx, tx, o, org, g.ID, kind, v)
			if err != nil {
				return nil, err
			}
			if tuple != nil {
				o.touch(*tuple)
			}
			changes = append(changes, "member "+kind+":"+v+" added")
		}
	}
	row.Pending = strings.Join(pending, "; ")
	return changes, nil
}

// scimMemberKind tells what a group member value names in org: a member user
// ("user"), a group of org ("group"), or nothing yet ("").
func (s *Service) scimMemberKind(ctx context.Context, tx store.Tx, o *op, org store.Org, v string) (string, error) {
	if _, err := o.membership(ctx, tx, org.ID, v); err == nil {
		return "user", nil
	} else if !errors.Is(err, trellis.ErrNotFound) {
		return "", err
	}
	if _, err := orgGroup(ctx, tx, org, v); err == nil {
		return "group", nil
	} else if !errors.Is(err, trellis.ErrNotFound) {
		return "", err
	}
	return "", nil
}

// groupMemberTuple is the relationship a group member writes: none for a
// user whose membership is not active.
func (s *Service) groupMemberTuple(ctx context.Context, tx store.Tx, o *op, org store.Org, group, kind, id string) (*engine.Relationship, error) {
	if kind == "group" {
		r := rel(groupRef(group), "member", groupMembers(id))
		return &r, nil
	}
	m, err := o.membership(ctx, tx, org.ID, id)
	if err != nil {
		return nil, err
	}
	if m.Status != store.StatusActive {
		return nil, nil
	}
	r := rel(groupRef(group), "member", subj("user", id))
	return &r, nil
}

// mappedRoles lists the roles org's mappings give a group (matched by
// displayName, externalId or id); roles that do not resolve (a custom role
// deleted since, owner) are returned as unresolved, for the pending list.
func (s *Service) mappedRoles(ctx context.Context, tx store.Tx, o *op, org store.Org, name, externalID, id string) ([]string, []string, error) {
	ms, err := o.scimMappings(ctx, tx, org.ID)
	if err != nil {
		return nil, nil, err
	}
	var roles, unresolved []string
	for _, m := range ms {
		if !strings.EqualFold(m.Group, name) && (externalID == "" || m.Group != externalID) && m.Group != id {
			continue
		}
		for _, r := range m.Roles {
			if slices.Contains(roles, r) {
				continue
			}
			if _, err := s.resolveRoles(ctx, tx, org, []string{r}, "roles"); err != nil || r == RoleOwner {
				var ve *trellis.ValidationError
				if r == RoleOwner || errors.As(err, &ve) {
					unresolved = append(unresolved, "role "+r+" does not resolve")
					continue
				}
				return nil, nil, err
			}
			roles = append(roles, r)
		}
	}
	return roles, unresolved, nil
}

// SCIMDeleteGroup removes a provisioned group; what it granted goes with it.
func (s *Service) SCIMDeleteGroup(ctx context.Context, p Principal, ref, id string, version int64) error {
	return s.run(ctx, p, "scim.group.delete", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		return s.scimDeleteGroup(ctx, tx, o, org, id, version)
	})
}

func (s *Service) scimDeleteGroup(ctx context.Context, tx store.Tx, o *op, org store.Org, id string, version int64) error {
	if _, err := scimRow(ctx, tx, org.ID, store.SCIMGroup, id, version); err != nil {
		return err
	}
	if err := tx.DeleteSCIMResource(ctx, org.ID, store.SCIMGroup, id); err != nil {
		return err
	}
	o.forgetResource(store.SCIMGroup, id, "", false)
	if _, err := orgGroup(ctx, tx, org, id); err == nil {
		if err := tx.DeleteGroup(ctx, id); err != nil {
			return err
		}
		o.filters = append(o.filters,
			engine.RelationshipFilter{ResourceType: "group", ResourceID: id},
			engine.RelationshipFilter{Subject: &engine.SubjectFilter{Type: "group", ID: id}})
		// the filters match what the graph holds when the entry is applied;
		// what earlier steps of a batch touch about the group is not there
		// yet, and would be written after them: delete it explicitly
		for _, u := range slices.Clone(o.updates) {
			r := u.Relationship
			if u.Operation != engine.OpDelete && (r.Resource.Type == "group" && r.Resource.ID == id || r.Subject.Object.Type == "group" && r.Subject.Object.ID == id) {
				o.delete(r)
			}
		}
	} else if !errors.Is(err, trellis.ErrNotFound) {
		return err
	}
	o.record(org.ID, "scim.group.delete", "group:"+id, nil)
	return nil
}

// SCIMGet reads one provisioned resource of org (kind store.SCIMUser or SCIMGroup).
func (s *Service) SCIMGet(ctx context.Context, p Principal, ref, kind, id string) (SCIMRecord, error) {
	var out SCIMRecord
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		r, err := scimRow(ctx, tx, org.ID, kind, id, AnyVersion)
		out = recordView(r)
		return err
	})
	return out, err
}

// SCIMByName finds a provisioned resource by userName or displayName; found is false when none.
func (s *Service) SCIMByName(ctx context.Context, p Principal, ref, kind, name string) (SCIMRecord, bool, error) {
	var out SCIMRecord
	found := false
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		r, err := tx.SCIMResourceByName(ctx, org.ID, kind, name)
		if errors.Is(err, trellis.ErrNotFound) {
			return nil
		}
		out, found = recordView(r), err == nil
		return err
	})
	return out, found, err
}

// SCIMList lists org's provisioned resources of kind, sorted by id.
func (s *Service) SCIMList(ctx context.Context, p Principal, ref, kind string) ([]SCIMRecord, error) {
	var out []SCIMRecord
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		rs, err := tx.ListSCIMResources(ctx, org.ID, kind, store.Page{})
		for _, r := range rs {
			out = append(out, recordView(r))
		}
		return err
	})
	return out, err
}

// RecordSCIMRequest counts one provisioning request in org's sync status.
// Its caller authenticated the request's token for org.
func (s *Service) RecordSCIMRequest(ctx context.Context, r store.SCIMRequest) error {
	if r.At.IsZero() {
		r.At = s.cfg.Now().UTC()
	}
	if len(r.Detail) > 500 {
		r.Detail = r.Detail[:500]
	}
	return s.store.InTx(ctx, func(tx store.Tx) error { return tx.RecordSCIMRequest(ctx, r) })
}
