package directory

import (
	"context"
	"errors"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// User is a user as clients see it.
type User struct {
	ID         string    `json:"id"`
	Email      string    `json:"email"`
	Name       string    `json:"name"`
	ExternalID string    `json:"externalId,omitempty"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"createdAt"`
}

// CreateUser is the body of POST /v1/users. ID is optional: provider admins
// importing users from another system may keep their ids.
type CreateUser struct {
	ID         string `json:"id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
	ExternalID string `json:"externalId"`
}

// Membership is a user's place in an organization as clients see it.
type Membership struct {
	User             string    `json:"user"`
	Organization     string    `json:"organization"`
	OrganizationSlug string    `json:"organizationSlug,omitempty"`
	Roles            []string  `json:"roles"`
	Status           string    `json:"status"`
	JoinedAt         time.Time `json:"joinedAt"`
	AuthenticatedVia string    `json:"authenticatedVia"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

// PutMember is the body of PUT /v1/organizations/{org}/members/{user}.
type PutMember struct {
	Roles  []string `json:"roles"`
	Status string   `json:"status"`
}

func userView(u store.User) User {
	return User{ID: u.ID, Email: u.Email, Name: u.Name, ExternalID: u.ExternalID, Status: u.Status, CreatedAt: u.CreatedAt}
}

func memberView(m store.Membership, slug string) Membership {
	roles := m.Roles
	if roles == nil {
		roles = []string{}
	}
	return Membership{User: m.User, Organization: m.Org, OrganizationSlug: slug, Roles: roles, Status: m.Status,
		JoinedAt: m.JoinedAt, AuthenticatedVia: m.AuthenticatedVia, UpdatedAt: m.UpdatedAt}
}

// NormalizeEmail validates a bare address and lower-cases it.
func NormalizeEmail(field, email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", trellis.Invalid(field, "is required")
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || len(email) > 254 || !strings.Contains(email[strings.LastIndexByte(email, '@'):], ".") {
		return "", trellis.Invalid(field, "%q is not an email address", email)
	}
	return strings.ToLower(email), nil
}

// CreateUser creates a user (provider admins; customer admins add people by invitation).
func (s *Service) CreateUser(ctx context.Context, p Principal, in CreateUser) (User, error) {
	email, err := NormalizeEmail("email", in.Email)
	if err != nil {
		return User{}, err
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = email[:strings.IndexByte(email, '@')]
	}
	if name, err = validName("name", name); err != nil {
		return User{}, err
	}
	if in.ID != "" && !userIDPattern.MatchString(in.ID) {
		return User{}, trellis.Invalid("id", "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
	}
	if len(in.ExternalID) > 255 {
		return User{}, trellis.Invalid("externalId", "must be at most 255 characters")
	}
	var out User
	err = s.run(ctx, p, "user.create", func(tx store.Tx, o *op) error {
		if err := s.requireProvider(ctx, p); err != nil {
			return err
		}
		if in.ID != "" {
			switch _, err := tx.GetUser(ctx, in.ID); {
			case err == nil:
				return trellis.Conflict("user_exists", "a user with id %s exists", in.ID)
			case !errors.Is(err, trellis.ErrNotFound): // the lookup failed: not a free id
				return err
			}
		}
		u, err := s.insertUser(ctx, tx, o, in.ID, email, name, in.ExternalID)
		out = userView(u)
		return err
	})
	return out, err
}

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func (s *Service) insertUser(ctx context.Context, tx store.Tx, o *op, id, email, name, externalID string) (store.User, error) {
	switch _, err := tx.GetUserByEmail(ctx, email); {
	case err == nil:
		return store.User{}, trellis.Conflict("email_taken", "a user with email %s exists", email)
	case !errors.Is(err, trellis.ErrNotFound): // the lookup failed: not a free email
		return store.User{}, err
	}
	if id == "" {
		id = newID("usr")
		o.madeFresh("user", id)
	}
	return s.putUserRow(ctx, tx, o, id, email, name, externalID)
}

// insertFreshUser inserts a user with a new id; its caller found no user with
// email (the store's unique key refuses one all the same).
func (s *Service) insertFreshUser(ctx context.Context, tx store.Tx, o *op, email, name, externalID string) (store.User, error) {
	id := newID("usr")
	o.madeFresh("user", id)
	return s.putUserRow(ctx, tx, o, id, email, name, externalID)
}

func (s *Service) putUserRow(ctx context.Context, tx store.Tx, o *op, id, email, name, externalID string) (store.User, error) {
	u := store.User{ID: id, Email: email, Name: name, ExternalID: externalID, Status: store.StatusActive, CreatedAt: o.now, UpdatedAt: o.now}
	if err := tx.InsertUser(ctx, u); err != nil {
		return store.User{}, err
	}
	o.record("", "user.create", "user:"+u.ID, map[string]any{"email": email})
	return u, nil
}

// userVisible: provider admins see every user, users themselves, and callers
// who manage the members of an organization the user belongs to.
func (s *Service) userVisible(ctx context.Context, tx store.Tx, p Principal, u store.User) (bool, error) {
	if ok, err := s.isProvider(ctx, p); err != nil || ok {
		return ok, err
	}
	if p.Kind == KindUser && p.ID == u.ID {
		return true, nil
	}
	ms, err := tx.UserMemberships(ctx, u.ID)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		org, err := tx.GetOrg(ctx, m.Org)
		if err != nil {
			return false, err
		}
		if ok, err := s.can(ctx, tx, p, org, permManageMembers); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// mayEnrol is consent: an administrator adds to org only a user it can
// already see (a member of an organization whose members it manages — its
// own subtree), or a user whose email is in a domain org or one of its
// ancestors verified. Anyone else joins by accepting an invitation.
func (s *Service) mayEnrol(ctx context.Context, tx store.Tx, p Principal, org store.Org, u store.User) (bool, error) {
	if ok, err := s.userVisible(ctx, tx, p, u); err != nil || ok {
		return ok, err
	}
	_, domain, _ := strings.Cut(u.Email, "@")
	owner, err := tx.OrgByVerifiedDomain(ctx, strings.ToLower(domain))
	if errors.Is(err, trellis.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return false, err
	}
	return slices.Contains(path, owner.ID), nil
}

func (s *Service) visibleUser(ctx context.Context, tx store.Tx, p Principal, id string) (store.User, error) {
	u, err := tx.GetUser(ctx, id)
	if err != nil {
		return u, err
	}
	ok, err := s.userVisible(ctx, tx, p, u)
	if err != nil {
		return u, err
	}
	if !ok {
		return u, notFound("user", id)
	}
	return u, nil
}

// GetUser returns a user the caller may see.
func (s *Service) GetUser(ctx context.Context, p Principal, id string) (User, error) {
	var out User
	err := s.read(ctx, func(tx store.Tx) error {
		u, err := s.visibleUser(ctx, tx, p, id)
		out = userView(u)
		return err
	})
	return out, err
}

// FindUsers looks users up by email; hidden users are simply not found.
func (s *Service) FindUsers(ctx context.Context, p Principal, email string) ([]User, error) {
	if email == "" {
		return nil, trellis.Invalid("email", "is required (GET /v1/users?email=)")
	}
	out := []User{}
	err := s.read(ctx, func(tx store.Tx) error {
		u, err := tx.GetUserByEmail(ctx, strings.ToLower(strings.TrimSpace(email)))
		if errors.Is(err, trellis.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		ok, err := s.userVisible(ctx, tx, p, u)
		if ok {
			out = append(out, userView(u))
		}
		return err
	})
	return out, err
}

// memberTuples are the relationships an active membership writes: member,
// its roles, and its place in the organization's groups.
func (s *Service) memberTuples(ctx context.Context, tx store.Tx, org store.Org, m store.Membership) ([]engine.Relationship, error) {
	if m.Status != store.StatusActive {
		return nil, nil
	}
	roles, err := s.resolveRoles(ctx, tx, org, m.Roles, "roles")
	if err != nil {
		return nil, err
	}
	if fresh, _ := ctx.Value(freshUserKey{}).(string); fresh == m.User {
		return memberRels(org, m, roles, nil), nil // a user created by this very operation is in no group
	}
	groups, err := groupsIn(ctx, tx, org, m.User)
	if err != nil {
		return nil, err
	}
	return memberRels(org, m, roles, groups), nil
}

// memberRels are memberTuples for roles and groups already read.
func memberRels(org store.Org, m store.Membership, roles []resolved, groups []string) []engine.Relationship {
	if m.Status != store.StatusActive {
		return nil
	}
	u := subj("user", m.User)
	out := []engine.Relationship{rel(orgRef(org.ID), "member", u)}
	out = append(out, grantTuples(org.ID, u, roles)...)
	for _, g := range groups {
		out = append(out, rel(engine.ObjectRef{Type: "group", ID: g}, "member", u))
	}
	return out
}

// groupsIn lists the groups of org the user is a direct member of.
func groupsIn(ctx context.Context, tx store.Tx, org store.Org, user string) ([]string, error) {
	groups, err := tx.GroupsOf(ctx, "user", user)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range groups {
		grp, err := tx.GetGroup(ctx, g.Group)
		if err != nil {
			return nil, err
		}
		if grp.Org == org.ID {
			out = append(out, g.Group)
		}
	}
	return out, nil
}

// freshUserKey marks a context in which the user named was created by the
// operation at hand (memberTuples then skips its group lookup).
type freshUserKey struct{}

// memberReadAhead names what a membership write reads first (the
// organization, the user, the membership, the user's groups), for a store
// that reads them in the round trip that begins the transaction. A ref by
// slug names the organization's id only once read: nothing is read ahead.
func memberReadAhead(ctx context.Context, ref, userID string) context.Context {
	id := strings.TrimPrefix(ref, "organization:")
	if !strings.HasPrefix(id, orgIDPrefix) {
		return ctx
	}
	return store.WithReadAhead(ctx, store.ReadAhead{Org: id, User: strings.TrimPrefix(userID, "user:")})
}

// PutMember adds a user to an organization or changes its roles or status.
// The caller must hold every permission of the roles it adds or removes.
func (s *Service) PutMember(ctx context.Context, p Principal, ref, userID string, in PutMember) (Membership, bool, error) {
	switch in.Status {
	case "", store.StatusActive, store.StatusInvited, store.StatusSuspended:
	default:
		return Membership{}, false, trellis.Invalid("status", "must be active, invited or suspended, got %q", in.Status)
	}
	var out Membership
	created := false
	ctx = memberReadAhead(ctx, ref, userID)
	err := s.runInTenant(ctx, p, "member.put", ref, func(tx store.Tx, o *op) error {
		// every read once: the organization (as runInTenant resolved it), the
		// user, the membership, the user's groups there, and the roles before
		// and after, resolved once each (their organization path read once)
		org, err := s.orgForOp(ctx, tx, o, ref, permManageMembers)
		if err != nil {
			return err
		}
		u, err := tx.GetUser(ctx, strings.TrimPrefix(userID, "user:"))
		if errors.Is(err, trellis.ErrNotFound) {
			return notFound("user", strings.TrimPrefix(userID, "user:"))
		} else if err != nil {
			return err
		}
		m, err := tx.GetMembership(ctx, org.ID, u.ID)
		switch {
		case errors.Is(err, trellis.ErrNotFound):
			if ok, err := s.mayEnrol(ctx, tx, p, org, u); err != nil {
				return err
			} else if !ok {
				return notFound("user", u.ID) // as for an unknown user: no oracle
			}
			created = true
			m = store.Membership{Org: org.ID, User: u.ID, Roles: []string{RoleMember}, Status: store.StatusActive, JoinedAt: o.now, AuthenticatedVia: "api"}
		case err != nil:
			return err
		}
		path, err := s.path(ctx, tx, org)
		if err != nil {
			return err
		}
		before, err := s.resolveOnPath(ctx, tx, org, path, m.Roles, "roles")
		if err != nil {
			return err
		}
		var old []resolved
		if !created {
			old = before
		}
		var groups []string
		if m.Status == store.StatusActive || in.Status == store.StatusActive {
			if groups, err = groupsIn(ctx, tx, org, u.ID); err != nil {
				return err
			}
		}
		beforeRels := memberRels(org, m, before, groups)
		if in.Roles != nil {
			m.Roles = dedupeStrings(in.Roles)
			if len(m.Roles) == 0 {
				m.Roles = []string{RoleMember}
			}
		}
		roles, err := s.resolveOnPath(ctx, tx, org, path, m.Roles, "roles")
		if err != nil {
			return err
		}
		changed := changedRoles(old, roles)
		if !created && in.Status != "" && (in.Status == store.StatusActive) != (m.Status == store.StatusActive) {
			// suspending or reinstating a membership revokes or grants all its roles
			changed = append(old, roles...)
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(changed), "roles"); err != nil {
			return err
		}
		if in.Status != "" {
			m.Status = in.Status
		}
		m.UpdatedAt = o.now
		if err := tx.PutMembership(ctx, m); err != nil {
			return err
		}
		o.replace(beforeRels, memberRels(org, m, roles, groups))
		action := "member.update"
		if created {
			action = "member.add"
		}
		o.record(org.ID, action, "user:"+u.ID, map[string]any{"roles": m.Roles, "status": m.Status})
		out = memberView(m, org.Slug)
		return nil
	})
	return out, created, err
}

// RemoveMember removes a membership: its tuples (and so every check it
// granted, cached ones included) go with it.
func (s *Service) RemoveMember(ctx context.Context, p Principal, ref, userID string) error {
	ctx = memberReadAhead(ctx, ref, userID)
	return s.runInTenant(ctx, p, "member.remove", ref, func(tx store.Tx, o *op) error {
		org, err := s.orgForOp(ctx, tx, o, ref, permManageMembers)
		if err != nil {
			return err
		}
		m, err := tx.GetMembership(ctx, org.ID, userID)
		if err != nil {
			return err
		}
		roles, err := s.resolveRoles(ctx, tx, org, m.Roles, "roles")
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(roles), "roles"); err != nil {
			return err
		}
		if err := s.dropMembershipOf(ctx, tx, o, org, m, roles); err != nil {
			return err
		}
		o.record(org.ID, "member.remove", "user:"+userID, map[string]any{"roles": m.Roles})
		return nil
	})
}

// GetMember returns one membership.
func (s *Service) GetMember(ctx context.Context, p Principal, ref, userID string) (Membership, error) {
	var out Membership
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		m, err := tx.GetMembership(ctx, org.ID, userID)
		out = memberView(m, org.Slug)
		return err
	})
	return out, err
}

// ListMembers pages through an organization's memberships.
func (s *Service) ListMembers(ctx context.Context, p Principal, ref string, size int, cursor string) ([]Membership, string, error) {
	size, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeCursor("cursor", cursor)
	if err != nil {
		return nil, "", err
	}
	out := []Membership{}
	next := ""
	err = s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		ms, err := tx.ListMembers(ctx, org.ID, store.Page{After: after, Limit: size + 1})
		if err != nil {
			return err
		}
		if len(ms) > size {
			ms = ms[:size]
			next = encodeCursor(ms[size-1].User)
		}
		for _, m := range ms {
			out = append(out, memberView(m, org.Slug))
		}
		return nil
	})
	return out, next, err
}

// UserOrganizations lists a user's memberships the caller may see.
func (s *Service) UserOrganizations(ctx context.Context, p Principal, userID string) ([]Membership, error) {
	out := []Membership{}
	err := s.read(ctx, func(tx store.Tx) error {
		u, err := s.visibleUser(ctx, tx, p, userID)
		if err != nil {
			return err
		}
		// the user sees all of its memberships, as do provider admins; others
		// see those in organizations whose members they manage
		all := p.Kind == KindUser && p.ID == u.ID
		if !all {
			if all, err = s.isProvider(ctx, p); err != nil {
				return err
			}
		}
		ms, err := tx.UserMemberships(ctx, u.ID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			org, err := tx.GetOrg(ctx, m.Org)
			if err != nil {
				return err
			}
			if !all {
				if ok, err := s.can(ctx, tx, p, org, permManageMembers); err != nil {
					return err
				} else if !ok {
					continue
				}
			}
			out = append(out, memberView(m, org.Slug))
		}
		return nil
	})
	return out, err
}

func dedupeStrings(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
