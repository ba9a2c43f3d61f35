package directory

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// SCIM tokens authenticate an organization's identity provider on
// /scim/v2/{org}. A token acts as its creator, confined to its organization
// (the principal's Org) and, when its creator was an API key, to that key's
// permissions: every provisioning write is weighed by authorizeEffects
// against that authority, so a token grants nothing its creator could not.
// Deleting or suspending the creator stops it (ADR 0015).

const (
	scimTokenPrefix = "scim_"
	permManageSCIM  = "manage_scim"
	// DefaultSCIMTokenTTL is a token's lifetime when none is asked for;
	// MaxSCIMTokenTTL the longest allowed.
	DefaultSCIMTokenTTL = 365 * 24 * time.Hour
	MaxSCIMTokenTTL     = 2 * 365 * 24 * time.Hour
)

// CreateSCIMToken is the body of POST /v1/organizations/{org}/scim/tokens.
type CreateSCIMToken struct {
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// SCIMToken is a token as clients see it; Token (the secret) only once, at creation.
type SCIMToken struct {
	ID           string     `json:"id"`
	Organization string     `json:"organization"`
	Name         string     `json:"name"`
	CreatedBy    string     `json:"createdBy"`
	CreatedAt    time.Time  `json:"createdAt"`
	ExpiresAt    time.Time  `json:"expiresAt"`
	LastUsedAt   *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt    *time.Time `json:"revokedAt,omitempty"`
	Status       string     `json:"status"` // active | expired | revoked
	Token        string     `json:"token,omitempty"`
}

func (s *Service) scimTokenView(k store.SCIMToken) SCIMToken {
	v := SCIMToken{ID: k.ID, Organization: k.Org, Name: k.Name, CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt,
		ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt, Status: "active"}
	switch {
	case k.RevokedAt != nil:
		v.Status = "revoked"
	case !s.cfg.Now().Before(k.ExpiresAt):
		v.Status = "expired"
	}
	return v
}

// CreateSCIMToken mints an organization's SCIM bearer token (manage_scim);
// the secret is returned once and stored hashed.
func (s *Service) CreateSCIMToken(ctx context.Context, p Principal, ref string, in CreateSCIMToken) (SCIMToken, error) {
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = "scim"
	}
	name, err := validName("name", name)
	if err != nil {
		return SCIMToken{}, err
	}
	now := s.cfg.Now().UTC()
	exp := now.Add(DefaultSCIMTokenTTL)
	if in.ExpiresAt != nil {
		if !in.ExpiresAt.After(now) || in.ExpiresAt.Sub(now) > MaxSCIMTokenTTL {
			return SCIMToken{}, trellis.Invalid("expiresAt", "must be in the future and at most %d days away", int(MaxSCIMTokenTTL.Hours()/24))
		}
		exp = in.ExpiresAt.UTC()
	}
	var out SCIMToken
	err = s.run(ctx, p, "scim_token.create", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		// the token will provision members and groups: its creator must manage them
		if err := s.authorize(ctx, tx, p, org, permManageMembers); err != nil {
			return err
		}
		secret := newSecret()
		k := store.SCIMToken{ID: newID("sct"), Org: org.ID, Name: name, Hash: tokenHash(secret), CreatedBy: p.Actor(),
			CreatedKey: p.KeyID, Permissions: slices.Clone(p.Permissions), CreatedAt: o.now, ExpiresAt: exp}
		if err := tx.InsertSCIMToken(ctx, k); err != nil {
			return err
		}
		o.record(org.ID, "scim_token.create", "scim_token:"+k.ID, map[string]any{"name": name, "expiresAt": exp.Format(time.RFC3339)})
		out = s.scimTokenView(k)
		out.Token = scimTokenPrefix + k.ID + "." + secret
		return nil
	})
	return out, err
}

// ListSCIMTokens lists an organization's SCIM tokens (never their secrets).
func (s *Service) ListSCIMTokens(ctx context.Context, p Principal, ref string) ([]SCIMToken, error) {
	out := []SCIMToken{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		ks, err := tx.ListSCIMTokens(ctx, org.ID)
		for _, k := range ks {
			out = append(out, s.scimTokenView(k))
		}
		return err
	})
	return out, err
}

// RevokeSCIMToken stops a token at once.
func (s *Service) RevokeSCIMToken(ctx context.Context, p Principal, ref, id string) error {
	return s.run(ctx, p, "scim_token.revoke", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		k, err := tx.GetSCIMToken(ctx, id)
		if err == nil && k.Org != org.ID {
			err = notFound("SCIM token", id)
		}
		if err != nil {
			return err
		}
		if k.RevokedAt == nil {
			k.RevokedAt = &o.now
			if err := tx.UpdateSCIMToken(ctx, k); err != nil {
				return err
			}
			o.record(org.ID, "scim_token.revoke", "scim_token:"+k.ID, nil)
		}
		return nil
	})
}

// ErrSCIMOrgUnknown: the SCIM path names an organization the token does not
// belong to, or none: answered exactly as an unknown organization (404).
var ErrSCIMOrgUnknown = fmt.Errorf("%w: no such organization", trellis.ErrNotFound)

// AuthenticateSCIM turns a SCIM bearer token presented on org ref's path into
// the principal provisioning acts as, and the organization's id. A token of
// another organization answers as an unknown organization; a bad, expired or
// revoked token, or one whose creator (or the API key it was minted with) is
// gone, is ErrUnauthenticated.
func (s *Service) AuthenticateSCIM(ctx context.Context, ref, raw string) (Principal, string, error) {
	fail := fmt.Errorf("%w: invalid SCIM token", trellis.ErrUnauthenticated)
	id, secret, ok := strings.Cut(strings.TrimPrefix(raw, scimTokenPrefix), ".")
	if !strings.HasPrefix(raw, scimTokenPrefix) || !ok || id == "" || secret == "" {
		return Principal{}, "", fail
	}
	var (
		k   store.SCIMToken
		org store.Org
	)
	// the token is checked before the path's organization is looked up: who
	// holds no valid token learns nothing about which organizations exist
	err := s.read(ctx, func(tx store.Tx) error {
		var err error
		if k, err = tx.GetSCIMToken(ctx, id); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(tokenHash(secret), k.Hash) != 1 || s.scimTokenView(k).Status != "active" {
			return trellis.ErrNotFound
		}
		// a token minted with an API key dies with it (revoked, expired,
		// deleted); one minted before keys were recorded keeps working within
		// the limit it holds (k.Permissions)
		creator := principalOf(k.CreatedBy)
		if k.CreatedKey != "" {
			if _, err := s.storedAuthority(ctx, tx, k.CreatedBy, k.CreatedKey, k.Permissions, "this SCIM token"); errors.Is(err, trellis.ErrForbidden) {
				return trellis.ErrNotFound
			} else if err != nil {
				return err
			}
		}
		switch creator.Kind {
		case KindUser:
			u, err := tx.GetUser(ctx, creator.ID)
			if err != nil {
				return err
			}
			if u.Status != store.StatusActive {
				return trellis.ErrNotFound
			}
		case KindServiceAccount:
			if k.CreatedKey != "" {
				break // storedAuthority read the account with its key
			}
			if _, err = tx.GetServiceAccount(ctx, creator.ID); err != nil {
				return err
			}
		}
		if org, err = resolveOrg(ctx, tx, ref); err != nil || org.ID != k.Org {
			return ErrSCIMOrgUnknown // unknown, or another organization's: the same answer
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrSCIMOrgUnknown):
		return Principal{}, "", err
	case errors.Is(err, trellis.ErrNotFound):
		return Principal{}, "", fail
	case err != nil:
		return Principal{}, "", err
	}
	now := s.cfg.Now().UTC()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= lastUsedEvery {
		_ = s.store.InTx(ctx, func(tx store.Tx) error {
			cur, err := tx.GetSCIMToken(ctx, id)
			if err != nil {
				return err
			}
			cur.LastUsedAt = &now
			return tx.UpdateSCIMToken(ctx, cur)
		})
	}
	p := principalOf(k.CreatedBy)
	p.Org, p.Permissions, p.KeyID = org.ID, slices.Clone(k.Permissions), k.ID
	if p.Kind == KindProvider {
		p.Org = "" // the provider has no organization scope; provisioning names org itself
	}
	return p, org.ID, nil
}
