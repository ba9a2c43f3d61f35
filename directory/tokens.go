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
		tok, exp, err := s.signer(ctx, id, orgID, "", in.TTL)
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
// user must still exist and be active.
func (s *Service) UserPrincipal(ctx context.Context, userID, org, actor string) (Principal, error) {
	err := s.read(ctx, func(tx store.Tx) error {
		u, err := tx.GetUser(ctx, userID)
		if err != nil {
			return err
		}
		if u.Status != store.StatusActive {
			return trellis.ErrNotFound
		}
		return nil
	})
	if errors.Is(err, trellis.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: the token's user is unknown or suspended", trellis.ErrUnauthenticated)
	} else if err != nil {
		return Principal{}, err
	}
	p := Principal{Kind: KindUser, ID: userID, Org: org}
	if actor == "" {
		return p, nil
	}
	// an impersonation token works only while its impersonation is live
	var im store.Impersonation
	live := false
	if org != "" {
		err = s.read(ctx, func(tx store.Tx) error {
			var err error
			im, live, err = s.liveImpersonation(ctx, tx, org, actor, userID)
			return err
		})
		if err != nil {
			return Principal{}, err
		}
	}
	if !live {
		return Principal{}, fmt.Errorf("%w: the impersonation this token was issued for has ended", trellis.ErrUnauthenticated)
	}
	p.Impersonator, p.Impersonation = "user:"+actor, im.ID
	return p, nil
}
