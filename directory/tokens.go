package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// IssueToken is the body of POST /v1/tokens.
type IssueToken struct {
	Subject      string `json:"subject"`
	Organization string `json:"organization"`
	TTL          time.Duration
}

// AccessClaims are what a user access token says: its user ("sub"), the
// organization it acts in ("org"), and for an impersonation token the actor
// ("act") and the impersonation it is bound to ("imp").
type AccessClaims struct {
	User, Org, Actor, Impersonation string
	TTL                             time.Duration // minting only
}

// Token is a minted user access token.
type Token struct {
	AccessToken  string    `json:"accessToken"`
	TokenType    string    `json:"tokenType"`
	ExpiresAt    time.Time `json:"expiresAt"`
	Subject      string    `json:"subject"`
	Organization string    `json:"organization,omitempty"`
	Actor        string    `json:"actor,omitempty"` // the impersonating user ("act")
}

// IssueToken mints a user access token (provider admins only). With an
// organization, the user must be an active member of it (or administer it)
// and it must not be suspended: suspended organizations' members get no tokens.
func (s *Service) IssueToken(ctx context.Context, p Principal, in IssueToken) (Token, error) {
	if s.signer == nil {
		return Token{}, fmt.Errorf("%w: token signing is not configured", trellis.ErrUnavailable)
	}
	id, ok := strings.CutPrefix(in.Subject, "user:")
	if !ok || id == "" {
		return Token{}, trellis.Invalid("subject", "must be user:<id>, got %q", in.Subject)
	}
	var out Token
	err := s.run(ctx, p, "token.issue", func(tx store.Tx, o *op) error {
		if err := s.requireProvider(ctx, p); err != nil {
			return err
		}
		u, err := tx.GetUser(ctx, id)
		if errors.Is(err, trellis.ErrNotFound) {
			return trellis.Invalid("subject", "no user %q", id)
		} else if err != nil {
			return err
		}
		if u.Status != store.StatusActive {
			return fmt.Errorf("%w: user %s is suspended", trellis.ErrForbidden, u.ID)
		}
		orgID, chain := "", ""
		if in.Organization != "" {
			org, err := resolveOrg(ctx, tx, in.Organization)
			if errors.Is(err, trellis.ErrNotFound) {
				return trellis.Invalid("organization", "no organization %q", in.Organization)
			} else if err != nil {
				return err
			}
			user := Principal{Kind: KindUser, ID: u.ID}
			ok, err := s.holds(ctx, orgRef(org.ID), permAccess, user)
			if err == nil && !ok { // a delegated administrator, unless the organization is suspended
				if ok, err = s.holds(ctx, orgRef(org.ID), permAdminister, user); err == nil && ok {
					var suspended bool
					suspended, err = s.holds(ctx, orgRef(org.ID), "is_suspended", user)
					ok = !suspended
				}
			}
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: user %s has no active access to organization %s (not a member, or the organization is suspended)", trellis.ErrForbidden, u.ID, org.Slug)
			}
			orgID, chain = org.ID, org.ID
		}
		// sign before the event commits: a token the signer refuses (ttl) is not audited as issued
		tok, exp, err := s.signer(ctx, AccessClaims{User: id, Org: orgID, TTL: in.TTL})
		if err != nil {
			return err
		}
		out = Token{AccessToken: tok, TokenType: "Bearer", ExpiresAt: exp, Subject: "user:" + id, Organization: orgID}
		o.record(chain, "token.issue", "user:"+u.ID, map[string]any{"organization": orgID, "ttlSeconds": int(in.TTL.Seconds())})
		return nil
	})
	if err != nil {
		return Token{}, err
	}
	return out, nil
}

// UserPrincipal turns a verified access token's claims into a principal: the
// user must still exist and be active. An impersonation token resolves the
// impersonation it names and no other: it must be that actor's impersonation
// of that user in that organization, and live (started, not ended, not
// expired), its actor still active; the principal then acts in the
// impersonation's organization.
func (s *Service) UserPrincipal(ctx context.Context, c AccessClaims) (Principal, error) {
	var im store.Impersonation
	err := s.read(ctx, func(tx store.Tx) error {
		u, err := tx.GetUser(ctx, c.User)
		if err != nil {
			return err
		}
		if u.Status != store.StatusActive {
			return trellis.ErrNotFound
		}
		if c.Org != "" {
			// a suspended membership (SCIM active:false) ends the user's tokens for that organization
			if m, err := tx.GetMembership(ctx, c.Org, u.ID); err == nil && m.Status == store.StatusSuspended {
				return trellis.ErrNotFound
			} else if err != nil && !errors.Is(err, trellis.ErrNotFound) {
				return err
			}
		}
		switch {
		case c.Actor == "" && c.Impersonation == "":
			return nil
		case c.Actor == "" || c.Impersonation == "": // an act token bound to no impersonation
			return errImpersonationOver
		}
		if im, err = tx.GetImpersonation(ctx, c.Impersonation); errors.Is(err, trellis.ErrNotFound) {
			return errImpersonationOver
		} else if err != nil {
			return err
		}
		if im.Actor != c.Actor || im.Target != c.User || im.Org != c.Org ||
			s.impersonationStatus(im) != store.ImpersonationActive {
			return errImpersonationOver
		}
		if actor, err := tx.GetUser(ctx, im.Actor); errors.Is(err, trellis.ErrNotFound) || err == nil && actor.Status != store.StatusActive {
			return errImpersonationOver // a suspended actor acts as nobody
		} else if err != nil {
			return err
		}
		return nil
	})
	switch {
	case errors.Is(err, trellis.ErrNotFound):
		return Principal{}, fmt.Errorf("%w: the token's user is unknown or suspended", trellis.ErrUnauthenticated)
	case errors.Is(err, errImpersonationOver):
		return Principal{}, fmt.Errorf("%w: %w", trellis.ErrUnauthenticated, err)
	case err != nil:
		return Principal{}, err
	}
	p := Principal{Kind: KindUser, ID: c.User, Org: c.Org}
	if im.ID != "" {
		p.Org, p.Impersonator, p.Impersonation = im.Org, "user:"+im.Actor, im.ID
	}
	return p, nil
}

// errImpersonationOver: an impersonation token whose impersonation is not live
// (or not the one it names).
var errImpersonationOver = errors.New("the impersonation this token was issued for has ended")
