package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// permManageSSO is the permission to configure an organization's sign-in
// (connections) and to claim and verify its domains.
const permManageSSO = "manage_sso"

// KindConnection is the principal of an SSO connection acting on a sign-in:
// its audit actor is "sso_connection:<id>", and what it grants is weighed
// against the authority of whoever configured the connection.
const KindConnection = "sso_connection"

// Recorder appends an audit event to an organization's chain ("" = the
// platform chain) within the running operation.
type Recorder func(org, action, target string, details map[string]any)

// AdministerOrg runs fn as one audited operation on the organization ref,
// which p must hold perm on (404 when p cannot see it, 403 when it can but
// lacks perm). fn writes rows other packages own (sign-in connections) and
// records their audit events; it writes no relationships.
func (s *Service) AdministerOrg(ctx context.Context, p Principal, ref, perm, action string, fn func(tx store.Tx, org store.Org, rec Recorder) error) error {
	return s.run(ctx, p, action, func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, perm)
		if err != nil {
			return err
		}
		return fn(tx, org, o.record)
	})
}

// ReadOrg runs fn in a read-only view on the organization ref, which p must
// hold perm on (as AdministerOrg).
func (s *Service) ReadOrg(ctx context.Context, p Principal, ref, perm string, fn func(tx store.Tx, org store.Org) error) error {
	return s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, perm)
		if err != nil {
			return err
		}
		return fn(tx, org)
	})
}

// AdministerPlatform runs fn as one audited operation that only provider
// admins may perform (403 for anyone else).
func (s *Service) AdministerPlatform(ctx context.Context, p Principal, action string, fn func(tx store.Tx, rec Recorder) error) error {
	return s.run(ctx, p, action, func(tx store.Tx, o *op) error {
		if err := s.requireProvider(ctx, p); err != nil {
			return err
		}
		return fn(tx, o.record)
	})
}

// RecordEvent appends one audit event, in a transaction of its own: sign-in
// refusals and token issue, refresh and revocation, which change no rows.
func (s *Service) RecordEvent(ctx context.Context, p Principal, org, action, target string, details map[string]any) error {
	return s.run(ctx, p, action, func(_ store.Tx, o *op) error {
		o.record(org, action, target, details)
		return nil
	})
}

// SSOSignIn is what a verified IdP assertion says, and what the connection
// it came through allows.
type SSOSignIn struct {
	Org        string // the connection's organization
	Connection string
	// Authority is the audit actor of who last configured the connection,
	// AuthorityKey the API key it used ("" for none): what the sign-in grants
	// (membership, mapped roles) is weighed against that authority, limited
	// as the key is now.
	Authority      string
	AuthorityKey   string
	AuthorityLimit []string
	Subject        string // the IdP's subject (case-sensitive)
	Email          string
	EmailVerified  bool // the IdP asserts the email verified
	Name           string
	Roles          []string // roles the connection's roleMapping gives this sign-in
	Method         string   // oidc | saml
	// JIT: a first sign-in creates the user and membership.
	JIT bool
	// RecreateRemoved: JIT recreates a membership an administrator or SCIM removed.
	RecreateRemoved bool
}

// SSOResult is who signed in.
type SSOResult struct {
	User       store.User
	Membership store.Membership
	Created    bool // the user was created by this sign-in
	Linked     bool // this sign-in linked the IdP subject to an existing user
}

// SignInRefused is a sign-in the directory will not let through; Reason is a
// stable code (audited, shown on the refusal page).
type SignInRefused struct {
	Reason string
	Detail string
}

func (e *SignInRefused) Error() string { return "sign-in refused: " + e.Reason + ": " + e.Detail }
func (e *SignInRefused) Unwrap() error { return trellis.ErrForbidden }

func refuse(reason, format string, args ...any) error {
	return &SignInRefused{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// SignInSSO resolves a verified IdP sign-in to a user and an active
// membership of in.Org. Linking is by (connection, subject) only; a first
// sign-in links to an existing user only when the IdP asserts the email
// verified and the organization (or an ancestor) verified its domain — never
// by email alone. JIT creates the user and membership; later sign-ins re-map
// only the roles this connection gave (manual and SCIM roles stay). A removed
// membership is not recreated unless the connection says so. Suspended
// users, memberships or organizations are refused. Every outcome is audited.
func (s *Service) SignInSSO(ctx context.Context, in SSOSignIn) (SSOResult, error) {
	p := Principal{Kind: KindConnection, ID: in.Connection, Org: in.Org}
	var out SSOResult
	err := s.run(ctx, p, "sso.signin", func(tx store.Tx, o *op) error {
		authority, err := s.storedAuthority(ctx, tx, in.Authority, in.AuthorityKey, in.AuthorityLimit, "this connection's configuration")
		if err != nil {
			return refuse("connection_authority", "%v", err)
		}
		o.authority = &authority
		org, err := tx.GetOrg(ctx, in.Org)
		if err != nil {
			return err
		}
		path, err := s.path(ctx, tx, org)
		if err != nil {
			return err
		}
		for _, id := range path {
			if a, err := tx.GetOrg(ctx, id); err != nil {
				return err
			} else if a.Status == store.StatusSuspended {
				return refuse("organization_suspended", "organization %s is suspended", org.Slug)
			}
		}
		if in.Subject == "" {
			return refuse("missing_subject", "the IdP sent no subject")
		}
		link, err := tx.GetSSOIdentity(ctx, in.Connection, in.Subject)
		linked := err == nil
		if err != nil && !errors.Is(err, trellis.ErrNotFound) {
			return err
		}
		var u store.User
		switch {
		case linked:
			if u, err = tx.GetUser(ctx, link.User); err != nil {
				return err
			}
		default:
			email, err := NormalizeEmail("email", in.Email)
			if err != nil {
				return refuse("invalid_email", "the IdP sent no usable email")
			}
			existing, err := tx.GetUserByEmail(ctx, email)
			switch {
			case err == nil:
				if !in.EmailVerified || !s.domainVerifiedOnPath(ctx, tx, path, email) {
					// nOAuth: an email alone never signs in as its owner
					return refuse("unlinked_email", "a user with this email exists; the IdP must assert it verified and the organization must verify its domain to link")
				}
				u, out.Linked = existing, true
			case errors.Is(err, trellis.ErrNotFound):
				if !in.JIT {
					return refuse("jit_disabled", "this connection does not create users")
				}
				name := strings.TrimSpace(in.Name)
				if name == "" {
					name = email[:strings.IndexByte(email, '@')]
				}
				if name, err = validName("name", name); err != nil {
					name = email[:strings.IndexByte(email, '@')]
				}
				if u, err = s.insertUser(ctx, tx, o, "", email, name, ""); err != nil {
					return err
				}
				out.Created = true
			default:
				return err
			}
		}
		if u.Status != store.StatusActive {
			return refuse("user_suspended", "user %s is suspended", u.ID)
		}
		m, err := tx.GetMembership(ctx, org.ID, u.ID)
		created := false
		switch {
		case errors.Is(err, trellis.ErrNotFound):
			switch {
			case linked && !in.RecreateRemoved:
				return refuse("membership_removed", "the membership was removed by an administrator")
			case !in.JIT:
				return refuse("not_a_member", "user is not a member and this connection does not add members")
			}
			created = true
			m = store.Membership{Org: org.ID, User: u.ID, Status: store.StatusActive, JoinedAt: o.now}
		case err != nil:
			return err
		case m.Status == store.StatusSuspended:
			return refuse("membership_suspended", "the membership in %s is suspended", org.Slug)
		}
		before, err := s.memberTuples(ctx, tx, org, m)
		if err != nil {
			return err
		}
		mapped := dedupeStrings(in.Roles)
		roles := make([]string, 0, len(m.Roles)+len(mapped))
		for _, r := range m.Roles { // roles of other sources stay
			if !slices.Contains(link.Roles, r) || slices.Contains(mapped, r) {
				roles = append(roles, r)
			}
		}
		for _, r := range mapped {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
		if len(roles) == 0 {
			roles = []string{RoleMember}
		}
		if _, err := s.resolveRoles(ctx, tx, org, roles, "roleMapping"); err != nil {
			return refuse("role_mapping_invalid", "%v", err)
		}
		m.Roles, m.Status, m.UpdatedAt = roles, store.StatusActive, o.now
		m.AuthenticatedVia = "sso:" + in.Connection
		if err := tx.PutMembership(ctx, m); err != nil {
			return err
		}
		after, err := s.memberTuples(ctx, tx, org, m)
		if err != nil {
			return err
		}
		o.replace(before, after)
		id := store.SSOIdentity{Connection: in.Connection, Subject: in.Subject, User: u.ID, Org: org.ID, Roles: mapped,
			CreatedAt: o.now, LastSignInAt: o.now}
		if linked {
			id.CreatedAt = link.CreatedAt
		}
		if err := tx.PutSSOIdentity(ctx, id); err != nil {
			return err
		}
		o.record(org.ID, "sso.signin", "user:"+u.ID, map[string]any{"connection": in.Connection, "method": in.Method,
			"userCreated": out.Created, "membershipCreated": created, "linked": out.Linked, "roles": roles})
		out.User, out.Membership = u, m
		return nil
	})
	var refused *SignInRefused
	if errors.As(err, &refused) {
		if aerr := s.RecordEvent(ctx, p, in.Org, "sso.signin.refused", "connection:"+in.Connection,
			map[string]any{"reason": refused.Reason, "method": in.Method}); aerr != nil {
			s.cfg.Logger.Warn("audit of a refused sign-in failed", "err", aerr)
		}
	}
	return out, err
}

// domainVerifiedOnPath: email's domain is verified by an organization of path.
func (s *Service) domainVerifiedOnPath(ctx context.Context, tx store.Tx, path []string, email string) bool {
	dom := email[strings.LastIndexByte(email, '@')+1:]
	owner, err := tx.OrgByVerifiedDomain(ctx, dom)
	return err == nil && slices.Contains(path, owner.ID)
}
