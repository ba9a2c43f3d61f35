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
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// API keys read "trk.<key id>.<secret>": the id finds the row, the secret is
// compared as a SHA-256 digest in constant time.
const apiKeyPrefix = "trk."

// Rotation overlap bounds: the old key keeps working this long after rotation.
const (
	defaultOverlap = 24 * time.Hour
	maxOverlap     = 30 * 24 * time.Hour
	lastUsedEvery  = time.Minute // last-used time is written at most this often per key
)

// ServiceAccount is a service account as clients see it.
type ServiceAccount struct {
	ID           string    `json:"id"`
	Organization string    `json:"organization"`
	Name         string    `json:"name"`
	Description  string    `json:"description,omitempty"`
	Roles        []string  `json:"roles"`
	Subject      string    `json:"subject"` // its graph subject, service_account:<id>
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// ServiceAccountInput is the body of POST/PATCH …/service-accounts.
type ServiceAccountInput struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Roles       *[]string `json:"roles"`
}

// APIKey is an API key as clients see it; Key (the secret) appears only in
// the response that creates it.
type APIKey struct {
	ID             string     `json:"id"`
	ServiceAccount string     `json:"serviceAccount"`
	Organization   string     `json:"organization"`
	Permissions    []string   `json:"permissions"`
	CreatedAt      time.Time  `json:"createdAt"`
	ExpiresAt      *time.Time `json:"expiresAt,omitempty"`
	LastUsedAt     *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt      *time.Time `json:"revokedAt,omitempty"`
	Status         string     `json:"status"` // active | expired | revoked
	Key            string     `json:"key,omitempty"`
}

// CreateAPIKey is the body of POST …/keys.
type CreateAPIKey struct {
	Permissions []string   `json:"permissions"`
	ExpiresAt   *time.Time `json:"expiresAt"`
}

// RotateAPIKey is the body of POST …/keys/{key}/rotate.
type RotateAPIKey struct {
	OverlapSeconds *int `json:"overlapSeconds"`
}

func saView(sa store.ServiceAccount) ServiceAccount {
	roles := sa.Roles
	if roles == nil {
		roles = []string{}
	}
	return ServiceAccount{ID: sa.ID, Organization: sa.Org, Name: sa.Name, Description: sa.Description, Roles: roles,
		Subject: "service_account:" + sa.ID, CreatedAt: sa.CreatedAt, UpdatedAt: sa.UpdatedAt}
}

func (s *Service) keyView(k store.APIKey) APIKey {
	v := APIKey{ID: k.ID, ServiceAccount: k.ServiceAccount, Organization: k.Org, Permissions: k.Permissions,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt, Status: "active"}
	switch {
	case k.RevokedAt != nil:
		v.Status = "revoked"
	case k.ExpiresAt != nil && !s.cfg.Now().Before(*k.ExpiresAt):
		v.Status = "expired"
	}
	return v
}

func (s *Service) saTuples(ctx context.Context, tx store.Tx, org store.Org, sa store.ServiceAccount) ([]resolved, []engine.Relationship, error) {
	roles, err := s.resolveRoles(ctx, tx, org, sa.Roles, "roles")
	if err != nil {
		return nil, nil, err
	}
	me := subj("service_account", sa.ID)
	out := []engine.Relationship{
		rel(engine.ObjectRef{Type: "service_account", ID: sa.ID}, "org", subj("organization", org.ID)),
		rel(orgRef(org.ID), "member", me),
	}
	return roles, append(out, grantTuples(org.ID, me, roles)...), nil
}

// accountFor resolves org, requiring manage, and one of its service accounts.
func (s *Service) accountFor(ctx context.Context, tx store.Tx, p Principal, ref, id string) (store.Org, store.ServiceAccount, error) {
	org, err := s.orgFor(ctx, tx, p, ref, permManage)
	if err != nil {
		return org, store.ServiceAccount{}, err
	}
	sa, err := orgServiceAccount(ctx, tx, org, id)
	return org, sa, err
}

func orgServiceAccount(ctx context.Context, tx store.Tx, org store.Org, id string) (store.ServiceAccount, error) {
	sa, err := tx.GetServiceAccount(ctx, id)
	if err == nil && sa.Org != org.ID {
		return store.ServiceAccount{}, notFound("service account", id)
	}
	return sa, err
}

// CreateServiceAccount creates a machine identity of org holding roles.
func (s *Service) CreateServiceAccount(ctx context.Context, p Principal, ref string, in ServiceAccountInput) (ServiceAccount, error) {
	if in.Name == nil {
		return ServiceAccount{}, trellis.Invalid("name", "is required")
	}
	name, err := validName("name", *in.Name)
	if err != nil {
		return ServiceAccount{}, err
	}
	var out ServiceAccount
	err = s.runInTenant(ctx, p, "service_account.create", ref, func(tx store.Tx, o *op) error {
		org, err := s.orgForOp(ctx, tx, o, ref, permManage)
		if err != nil {
			return err
		}
		sa := store.ServiceAccount{ID: newID("sa"), Org: org.ID, Name: name, Roles: []string{RoleMember}, CreatedAt: o.now, UpdatedAt: o.now}
		if in.Description != nil {
			sa.Description = *in.Description
		}
		if in.Roles != nil && len(*in.Roles) > 0 {
			sa.Roles = dedupeStrings(*in.Roles)
		}
		roles, tuples, err := s.saTuples(ctx, tx, org, sa)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(roles), "roles"); err != nil {
			return err
		}
		if err := tx.InsertServiceAccount(ctx, sa); err != nil {
			return err
		}
		o.touch(tuples...)
		o.record(org.ID, "service_account.create", "service_account:"+sa.ID, map[string]any{"name": sa.Name, "roles": sa.Roles})
		out = saView(sa)
		return nil
	})
	return out, err
}

// ListServiceAccounts lists org's service accounts.
func (s *Service) ListServiceAccounts(ctx context.Context, p Principal, ref string) ([]ServiceAccount, error) {
	out := []ServiceAccount{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManage)
		if err != nil {
			return err
		}
		sas, err := tx.ListServiceAccounts(ctx, org.ID)
		for _, sa := range sas {
			out = append(out, saView(sa))
		}
		return err
	})
	return out, err
}

// GetServiceAccount returns one service account.
func (s *Service) GetServiceAccount(ctx context.Context, p Principal, ref, id string) (ServiceAccount, error) {
	var out ServiceAccount
	err := s.read(ctx, func(tx store.Tx) error {
		_, sa, err := s.accountFor(ctx, tx, p, ref, id)
		out = saView(sa)
		return err
	})
	return out, err
}

// UpdateServiceAccount renames a service account or changes its roles.
func (s *Service) UpdateServiceAccount(ctx context.Context, p Principal, ref, id string, in ServiceAccountInput) (ServiceAccount, error) {
	var out ServiceAccount
	err := s.runInTenant(ctx, p, "service_account.update", ref, func(tx store.Tx, o *op) error {
		org, sa, err := s.accountFor(ctx, tx, p, ref, id)
		if err != nil {
			return err
		}
		oldRoles, before, err := s.saTuples(ctx, tx, org, sa)
		if err != nil {
			return err
		}
		if in.Name != nil {
			if sa.Name, err = validName("name", *in.Name); err != nil {
				return err
			}
		}
		if in.Description != nil {
			sa.Description = *in.Description
		}
		if in.Roles != nil {
			sa.Roles = dedupeStrings(*in.Roles)
		}
		roles, after, err := s.saTuples(ctx, tx, org, sa)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, permissionsOf(changedRoles(oldRoles, roles)), "roles"); err != nil {
			return err
		}
		sa.UpdatedAt = o.now
		if err := tx.UpdateServiceAccount(ctx, sa); err != nil {
			return err
		}
		o.replace(before, after)
		o.record(org.ID, "service_account.update", "service_account:"+sa.ID, map[string]any{"name": sa.Name, "roles": sa.Roles})
		out = saView(sa)
		return nil
	})
	return out, err
}

// DeleteServiceAccount removes a service account, its keys and its tuples.
func (s *Service) DeleteServiceAccount(ctx context.Context, p Principal, ref, id string) error {
	return s.run(ctx, p, "service_account.delete", func(tx store.Tx, o *op) error {
		org, sa, err := s.accountFor(ctx, tx, p, ref, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteServiceAccount(ctx, sa.ID); err != nil {
			return err
		}
		o.filters = append(o.filters,
			engine.RelationshipFilter{ResourceType: "service_account", ResourceID: sa.ID},
			engine.RelationshipFilter{Subject: &engine.SubjectFilter{Type: "service_account", ID: sa.ID}})
		o.record(org.ID, "service_account.delete", "service_account:"+sa.ID, map[string]any{"name": sa.Name})
		return nil
	})
}

// CreateKey mints an API key for a service account, limited to permissions
// the caller holds on the account's organization. The secret is returned once.
func (s *Service) CreateKey(ctx context.Context, p Principal, ref, saID string, in CreateAPIKey) (APIKey, error) {
	perms, err := s.validPermissions(in.Permissions)
	if err != nil {
		return APIKey{}, err
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.cfg.Now()) {
		return APIKey{}, trellis.Invalid("expiresAt", "must be in the future")
	}
	var out APIKey
	err = s.run(ctx, p, "api_key.create", func(tx store.Tx, o *op) error {
		org, sa, err := s.accountFor(ctx, tx, p, ref, saID)
		if err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, perms, "permissions"); err != nil {
			return err
		}
		out, err = s.mintKey(ctx, tx, o, sa, perms, in.ExpiresAt)
		return err
	})
	return out, err
}

func (s *Service) mintKey(ctx context.Context, tx store.Tx, o *op, sa store.ServiceAccount, perms []string, expires *time.Time) (APIKey, error) {
	secret := newSecret()
	k := store.APIKey{ID: newID("key"), ServiceAccount: sa.ID, Org: sa.Org, Hash: tokenHash(secret), Permissions: perms, CreatedAt: o.now, ExpiresAt: expires}
	if err := tx.InsertAPIKey(ctx, k); err != nil {
		return APIKey{}, err
	}
	o.record(sa.Org, "api_key.create", "service_account:"+sa.ID, map[string]any{"key": k.ID, "permissions": perms})
	v := s.keyView(k)
	v.Key = apiKeyPrefix + k.ID + "." + secret
	return v, nil
}

func orgKey(ctx context.Context, tx store.Tx, sa store.ServiceAccount, id string) (store.APIKey, error) {
	k, err := tx.GetAPIKey(ctx, id)
	if err == nil && k.ServiceAccount != sa.ID {
		return store.APIKey{}, notFound("API key", id)
	}
	return k, err
}

// RotateKey mints a successor with the same permissions; the old key keeps
// working for the overlap window (default 24h, 0 = stops now).
func (s *Service) RotateKey(ctx context.Context, p Principal, ref, saID, keyID string, in RotateAPIKey) (APIKey, error) {
	overlap := defaultOverlap
	if in.OverlapSeconds != nil {
		overlap = time.Duration(*in.OverlapSeconds) * time.Second
		if *in.OverlapSeconds < 0 || overlap > maxOverlap {
			return APIKey{}, trellis.Invalid("overlapSeconds", "must be between 0 and %d", int(maxOverlap.Seconds()))
		}
	}
	var out APIKey
	err := s.run(ctx, p, "api_key.rotate", func(tx store.Tx, o *op) error {
		org, sa, err := s.accountFor(ctx, tx, p, ref, saID)
		if err != nil {
			return err
		}
		old, err := orgKey(ctx, tx, sa, keyID)
		if err != nil {
			return err
		}
		if v := s.keyView(old); v.Status != "active" {
			return trellis.Conflict("key_"+v.Status, "API key %s is %s", keyID, v.Status)
		}
		if err := s.noEscalation(ctx, tx, p, org, old.Permissions, "permissions"); err != nil {
			return err
		}
		until := o.now.Add(overlap)
		if old.ExpiresAt == nil || until.Before(*old.ExpiresAt) {
			old.ExpiresAt = &until
		}
		if err := tx.UpdateAPIKey(ctx, old); err != nil {
			return err
		}
		out, err = s.mintKey(ctx, tx, o, sa, old.Permissions, nil)
		o.record(org.ID, "api_key.rotate", "service_account:"+sa.ID, map[string]any{"key": old.ID, "successor": out.ID, "oldKeyExpiresAt": until.Format(time.RFC3339)})
		return err
	})
	return out, err
}

// RevokeKey stops a key at once.
func (s *Service) RevokeKey(ctx context.Context, p Principal, ref, saID, keyID string) error {
	return s.run(ctx, p, "api_key.revoke", func(tx store.Tx, o *op) error {
		org, sa, err := s.accountFor(ctx, tx, p, ref, saID)
		if err != nil {
			return err
		}
		k, err := orgKey(ctx, tx, sa, keyID)
		if err != nil {
			return err
		}
		if k.RevokedAt == nil {
			k.RevokedAt = &o.now
			if err := tx.UpdateAPIKey(ctx, k); err != nil {
				return err
			}
			o.record(org.ID, "api_key.revoke", "service_account:"+sa.ID, map[string]any{"key": k.ID})
		}
		return nil
	})
}

// ListKeys lists a service account's keys (never their secrets).
func (s *Service) ListKeys(ctx context.Context, p Principal, ref, saID string) ([]APIKey, error) {
	out := []APIKey{}
	err := s.read(ctx, func(tx store.Tx) error {
		_, sa, err := s.accountFor(ctx, tx, p, ref, saID)
		if err != nil {
			return err
		}
		keys, err := tx.ListAPIKeys(ctx, sa.ID)
		for _, k := range keys {
			out = append(out, s.keyView(k))
		}
		return err
	})
	return out, err
}

// IsAPIKey tells API keys from other bearer tokens.
func IsAPIKey(token string) bool { return strings.HasPrefix(token, apiKeyPrefix) }

// AuthenticateKey turns an API key into its service account's principal.
// Every failure is the same ErrUnauthenticated.
func (s *Service) AuthenticateKey(ctx context.Context, raw string) (Principal, error) {
	fail := fmt.Errorf("%w: invalid API key", trellis.ErrUnauthenticated)
	id, secret, ok := strings.Cut(strings.TrimPrefix(raw, apiKeyPrefix), ".")
	if !IsAPIKey(raw) || !ok || id == "" || secret == "" {
		return Principal{}, fail
	}
	k, err := s.keyOfLiveAccount(ctx, id)
	if errors.Is(err, trellis.ErrNotFound) {
		return Principal{}, fail
	} else if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare(tokenHash(secret), k.Hash) != 1 || s.keyView(k).Status != "active" {
		return Principal{}, fail
	}
	now := s.cfg.Now().UTC()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= lastUsedEvery {
		_ = s.store.InTx(ctx, func(tx store.Tx) error {
			cur, err := tx.GetAPIKey(ctx, id)
			if err != nil {
				return err
			}
			cur.LastUsedAt = &now
			return tx.UpdateAPIKey(ctx, cur)
		})
	}
	return Principal{Kind: KindServiceAccount, ID: k.ServiceAccount, Org: k.Org, Permissions: slices.Clone(k.Permissions), KeyID: k.ID}, nil
}

// keyOfLiveAccount reads API key id, and ErrNotFound when it or its service
// account does not exist.
func (s *Service) keyOfLiveAccount(ctx context.Context, id string) (store.APIKey, error) {
	var k store.APIKey
	err := s.read(ctx, func(tx store.Tx) error {
		var err error
		if k, err = tx.GetAPIKey(ctx, id); err != nil {
			return err
		}
		_, err = tx.GetServiceAccount(ctx, k.ServiceAccount)
		return err
	})
	return k, err
}
