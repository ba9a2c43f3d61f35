package directory

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// Invitation is an invitation as clients see it. Token is set only in the
// response that creates it: only its SHA-256 is stored.
type Invitation struct {
	ID           string     `json:"id"`
	Organization string     `json:"organization"`
	Email        string     `json:"email"`
	Roles        []string   `json:"roles"`
	Status       string     `json:"status"` // pending | accepted | expired | revoked
	InvitedBy    string     `json:"invitedBy"`
	CreatedAt    time.Time  `json:"createdAt"`
	ExpiresAt    time.Time  `json:"expiresAt"`
	AcceptedAt   *time.Time `json:"acceptedAt,omitempty"`
	AcceptedBy   string     `json:"acceptedBy,omitempty"`
	Token        string     `json:"token,omitempty"`
}

// CreateInvitation is the body of POST …/invitations.
type CreateInvitation struct {
	Email      string   `json:"email"`
	Roles      []string `json:"roles"`
	TTLSeconds int      `json:"ttlSeconds"`
}

// AcceptInvitation is the optional body of POST /v1/invitations/{token}/accept.
type AcceptInvitation struct {
	Name string `json:"name"`
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func (s *Service) invitationView(inv store.Invitation) Invitation {
	v := Invitation{ID: inv.ID, Organization: inv.Org, Email: inv.Email, Roles: inv.Roles, InvitedBy: inv.InvitedBy,
		CreatedAt: inv.CreatedAt, ExpiresAt: inv.ExpiresAt, AcceptedAt: inv.AcceptedAt, AcceptedBy: inv.AcceptedBy}
	switch {
	case inv.AcceptedAt != nil:
		v.Status = "accepted"
	case inv.RevokedAt != nil:
		v.Status = "revoked"
	case !s.cfg.Now().Before(inv.ExpiresAt):
		v.Status = "expired"
	default:
		v.Status = "pending"
	}
	return v
}

// Invite invites an email into an organization with roles the caller may grant.
func (s *Service) Invite(ctx context.Context, p Principal, ref string, in CreateInvitation) (Invitation, error) {
	email, err := NormalizeEmail("email", in.Email)
	if err != nil {
		return Invitation{}, err
	}
	ttl := s.cfg.InvitationTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
		if in.TTLSeconds < 60 || ttl > s.cfg.MaxInviteTTL {
			return Invitation{}, trellis.Invalid("ttlSeconds", "must be between 60 and %d", int(s.cfg.MaxInviteTTL.Seconds()))
		}
	}
	roles := dedupeStrings(in.Roles)
	if len(roles) == 0 {
		roles = []string{RoleMember}
	}
	token := "inv_" + newSecret()
	var out Invitation
	err = s.run(ctx, p, "invitation.create", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		resolvedRoles, err := s.resolveRoles(ctx, tx, org, roles, "roles")
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(resolvedRoles), "roles"); err != nil {
			return err
		}
		if p.Kind != KindProvider {
			if err := s.noteDelegation(ctx, tx, o, p, org, permManageMembers); err != nil {
				return err
			}
		}
		inv := store.Invitation{ID: newID("inv"), Org: org.ID, Email: email, Roles: roles, TokenHash: tokenHash(token),
			InvitedBy: p.Actor(), InviterKey: p.KeyID, InviterLimit: slices.Clone(p.Permissions), Permissions: permissionsOf(resolvedRoles), CreatedAt: o.now, ExpiresAt: o.now.Add(ttl)}
		if err := tx.InsertInvitation(ctx, inv); err != nil {
			return err
		}
		o.record(org.ID, "invitation.create", "invitation:"+inv.ID, map[string]any{"email": email, "roles": roles})
		out = s.invitationView(inv)
		out.Token = token
		return nil
	})
	return out, err
}

// ListInvitations lists an organization's invitations.
func (s *Service) ListInvitations(ctx context.Context, p Principal, ref string) ([]Invitation, error) {
	out := []Invitation{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		invs, err := tx.ListInvitations(ctx, org.ID)
		for _, inv := range invs {
			out = append(out, s.invitationView(inv))
		}
		return err
	})
	return out, err
}

// RevokeInvitation makes a pending invitation unusable.
func (s *Service) RevokeInvitation(ctx context.Context, p Principal, ref, id string) error {
	return s.run(ctx, p, "invitation.revoke", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		inv, err := tx.GetInvitation(ctx, id)
		if err != nil || inv.Org != org.ID {
			return notFound("invitation", id)
		}
		if inv.AcceptedAt != nil {
			return trellis.Conflict("invitation_accepted", "invitation %s was already accepted", id)
		}
		if inv.RevokedAt == nil {
			inv.RevokedAt = &o.now
			if err := tx.UpdateInvitation(ctx, inv); err != nil {
				return err
			}
			o.record(org.ID, "invitation.revoke", "invitation:"+inv.ID, map[string]any{"email": inv.Email})
		}
		return nil
	})
}

// Accept redeems an invitation token and creates (or activates) the membership.
// The token itself is the credential; if the caller also presents a user
// token, its email must be the invited one. The invited email's user is
// created when it does not exist yet.
func (s *Service) Accept(ctx context.Context, p *Principal, token string, in AcceptInvitation) (Membership, error) {
	var out Membership
	var actor Principal
	err := s.run(ctx, Principal{}, "invitation.accept", func(tx store.Tx, o *op) error {
		inv, err := tx.GetInvitationByTokenHash(ctx, tokenHash(token))
		if errors.Is(err, trellis.ErrNotFound) {
			return fmt.Errorf("%w: invitation", trellis.ErrNotFound)
		} else if err != nil {
			return err
		}
		switch {
		case inv.AcceptedAt != nil:
			return trellis.Conflict("invitation_used", "this invitation was already accepted")
		case inv.RevokedAt != nil:
			return trellis.Conflict("invitation_revoked", "this invitation was revoked")
		case !o.now.Before(inv.ExpiresAt):
			return trellis.Conflict("invitation_expired", "this invitation expired at %s", inv.ExpiresAt.Format(time.RFC3339))
		}
		org, err := tx.GetOrg(ctx, inv.Org)
		if err != nil {
			return err
		}
		u, err := tx.GetUserByEmail(ctx, inv.Email)
		switch {
		case errors.Is(err, trellis.ErrNotFound):
			if p != nil && p.Kind == KindUser {
				return fmt.Errorf("%w: this invitation is for another email address", trellis.ErrForbidden)
			}
			name := strings.TrimSpace(in.Name)
			if name == "" {
				name = inv.Email[:strings.IndexByte(inv.Email, '@')]
			}
			if name, err = validName("name", name); err != nil {
				return err
			}
			o.p = Principal{Kind: KindUser}
			if u, err = s.insertUser(ctx, tx, o, "", inv.Email, name, ""); err != nil {
				return err
			}
		case err != nil:
			return err
		case p != nil && p.Kind == KindUser && p.ID != u.ID:
			return fmt.Errorf("%w: this invitation is for another email address", trellis.ErrForbidden)
		case u.Status != store.StatusActive:
			return fmt.Errorf("%w: user %s is suspended", trellis.ErrForbidden, u.ID)
		}
		actor = Principal{Kind: KindUser, ID: u.ID}
		if p != nil && p.Kind == KindUser && p.Impersonation != "" {
			// accepted under impersonation: it grants nothing beyond plain
			// access (authorizeEffects), whoever invited
			actor.Impersonator, actor.Impersonation = p.Impersonator, p.Impersonation
		}
		o.p = actor
		// what the membership grants is the inviter's grant: it is authorized
		// against the inviter's authority now, limited as the key it was sent
		// with is, so an invitation dies with it (a delegation revoked, an
		// admin removed, the key revoked)
		inviter, err := s.storedAuthority(ctx, tx, inv.InvitedBy, inv.InviterKey, inv.InviterLimit, "this invitation")
		if err != nil {
			return err
		}
		o.authority = &inviter
		for i := range o.events {
			o.events[i].Actor = actor.Actor()
		}
		m, err := tx.GetMembership(ctx, org.ID, u.ID)
		if errors.Is(err, trellis.ErrNotFound) {
			m = store.Membership{Org: org.ID, User: u.ID, JoinedAt: o.now, AuthenticatedVia: "invitation"}
		} else if err != nil {
			return err
		} else if m.Status == store.StatusSuspended {
			// lifting a suspension re-grants every role of the membership: an
			// admin decision (PUT …/members), not an inviter's
			return trellis.Conflict("membership_suspended", "user %s's membership in organization %s is suspended", u.ID, org.Slug)
		}
		if inv.Permissions != nil {
			// the inviter's grant was what the roles carried when it was sent
			now, err := s.resolveRoles(ctx, tx, org, inv.Roles, "roles")
			if err != nil {
				return err
			}
			for _, perm := range permissionsOf(now) {
				if !slices.Contains(inv.Permissions, perm) {
					return trellis.Conflict("invitation_widened", "the invitation's roles now grant %s, which they did not when it was sent: ask for a new invitation", perm)
				}
			}
		}
		before, err := s.memberTuples(ctx, tx, org, m)
		if err != nil {
			return err
		}
		for _, r := range inv.Roles {
			if !slices.Contains(m.Roles, r) {
				m.Roles = append(m.Roles, r)
			}
		}
		m.Status, m.UpdatedAt = store.StatusActive, o.now
		if err := tx.PutMembership(ctx, m); err != nil {
			return err
		}
		after, err := s.memberTuples(ctx, tx, org, m)
		if err != nil {
			return err
		}
		o.replace(before, after)
		inv.AcceptedAt, inv.AcceptedBy = &o.now, "user:"+u.ID
		if err := tx.UpdateInvitation(ctx, inv); err != nil {
			return err
		}
		o.record(org.ID, "invitation.accept", "invitation:"+inv.ID, map[string]any{"user": u.ID, "roles": inv.Roles})
		out = memberView(m, org.Slug)
		return nil
	})
	return out, err
}
