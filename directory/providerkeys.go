package directory

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// Provider API keys read "trp.<key id>.<secret>" (service-account keys read
// "trk."): the id finds the row, the secret is compared as a SHA-256 digest in
// constant time.
const providerKeyPrefix = "trp."

// Provider API key scopes (ADR 0014).
const (
	ScopeCheck              = "check" // check, bulk, lookups, explain
	ScopeRelationshipsRead  = "relationships:read"
	ScopeRelationshipsWrite = "relationships:write"
	ScopeSchemaRead         = "schema:read"
	ScopeSchemaWrite        = "schema:write"
	ScopeDirectoryRead      = "directory:read"
	ScopeDirectoryWrite     = "directory:write"
	ScopeAuditRead          = "audit:read"
	ScopeAccessRead         = "access:read"
)

// Scopes lists every provider API key scope.
var Scopes = []string{ScopeCheck, ScopeRelationshipsRead, ScopeRelationshipsWrite, ScopeSchemaRead, ScopeSchemaWrite,
	ScopeDirectoryRead, ScopeDirectoryWrite, ScopeAuditRead, ScopeAccessRead}

// providerKeyCacheTTL bounds how long an authenticated key is trusted without
// reading its row again: a key revoked on another node stops within it (on
// this node, at once).
const providerKeyCacheTTL = 10 * time.Second

// ProviderAPIKey is a provider API key as clients see it; Secret appears only
// in the response that creates (or rotates) it.
type ProviderAPIKey struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Scopes       []string   `json:"scopes"`
	Organization string     `json:"organization,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	CreatedBy    string     `json:"createdBy"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	LastUsedAt   *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt    *time.Time `json:"revokedAt,omitempty"`
	RateLimit    *RateLimit `json:"rateLimit,omitempty"`
	Status       string     `json:"status"` // active | expired | revoked
	Secret       string     `json:"secret,omitempty"`
}

// RateLimit is a token bucket: PerSecond tokens a second, Burst at most.
type RateLimit struct {
	PerSecond float64 `json:"perSecond"`
	Burst     int     `json:"burst"`
}

// CreateProviderKey is the body of POST /v1/api-keys.
type CreateProviderKey struct {
	Name         *string    `json:"name"`
	Scopes       []string   `json:"scopes"`
	Organization string     `json:"organization"`
	ExpiresAt    *time.Time `json:"expiresAt"`
	RateLimit    *RateLimit `json:"rateLimit"`
}

// KeyGrant is what an authenticated provider API key may do.
type KeyGrant struct {
	ID     string
	Name   string
	Scopes []string
	// Org confines checks and lookups to this organization's subtree ("" = none).
	Org       string
	RateLimit *RateLimit
}

// Allows reports whether the grant holds scope.
func (g *KeyGrant) Allows(scope string) bool { return slices.Contains(g.Scopes, scope) }

func (s *Service) providerKeyView(k store.ProviderKey) ProviderAPIKey {
	v := ProviderAPIKey{ID: k.ID, Name: k.Name, Scopes: slices.Clone(k.Scopes), Organization: k.Org, CreatedAt: k.CreatedAt,
		CreatedBy: k.CreatedBy, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt, Status: "active"}
	if k.RatePerSecond > 0 {
		v.RateLimit = &RateLimit{PerSecond: k.RatePerSecond, Burst: k.Burst}
	}
	switch {
	case k.RevokedAt != nil:
		v.Status = "revoked"
	case k.ExpiresAt != nil && !s.cfg.Now().Before(*k.ExpiresAt):
		v.Status = "expired"
	}
	return v
}

// keyManager refuses every API key: keys do not mint or manage keys, so no
// key can widen itself (only the master admin key and provider users can).
func (s *Service) keyManager(ctx context.Context, p Principal) error {
	if p.KeyID != "" {
		return fmt.Errorf("%w: API keys cannot manage API keys", trellis.ErrForbidden)
	}
	return s.requireProvider(ctx, p)
}

func validKeyScopes(scopes []string, org string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, trellis.Invalid("scopes", "at least one scope is required (one of %s)", strings.Join(Scopes, ", "))
	}
	out := dedupeStrings(scopes)
	for i, sc := range out {
		if !slices.Contains(Scopes, sc) {
			return nil, trellis.Invalid(fmt.Sprintf("scopes[%d]", i), "unknown scope %q (one of %s)", sc, strings.Join(Scopes, ", "))
		}
		if org != "" && sc != ScopeCheck {
			return nil, trellis.RuleAt(fmt.Sprintf("scopes[%d]", i), "scope_not_confinable",
				"a key bound to an organization holds only the check scope (%q is not confined to a subtree: use an unbound key, or a service account's key for one organization's directory)", sc)
		}
	}
	return out, nil
}

func validRate(r *RateLimit) error {
	if r == nil {
		return nil
	}
	switch {
	case r.PerSecond <= 0 || r.PerSecond > 1e6 || math.IsNaN(r.PerSecond):
		return trellis.Invalid("rateLimit.perSecond", "must be above 0 and at most 1000000")
	case r.Burst < 1 || r.Burst > 1_000_000:
		return trellis.Invalid("rateLimit.burst", "must be between 1 and 1000000")
	}
	return nil
}

// CreateProviderKey mints a provider API key (provider admins; never through
// another key). The secret is returned once; the event goes to the platform
// audit chain.
func (s *Service) CreateProviderKey(ctx context.Context, p Principal, in CreateProviderKey) (ProviderAPIKey, error) {
	if in.Name == nil {
		return ProviderAPIKey{}, trellis.Invalid("name", "is required")
	}
	name, err := validName("name", *in.Name)
	if err != nil {
		return ProviderAPIKey{}, err
	}
	scopes, err := validKeyScopes(in.Scopes, in.Organization)
	if err != nil {
		return ProviderAPIKey{}, err
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.cfg.Now()) {
		return ProviderAPIKey{}, trellis.Invalid("expiresAt", "must be in the future")
	}
	if err := validRate(in.RateLimit); err != nil {
		return ProviderAPIKey{}, err
	}
	if err := s.keyManager(ctx, p); err != nil {
		return ProviderAPIKey{}, err
	}
	var out ProviderAPIKey
	err = s.run(ctx, p, "provider_key.create", func(tx store.Tx, o *op) error {
		k := store.ProviderKey{ID: newID("pk"), Name: name, Scopes: scopes, CreatedBy: p.Actor(), CreatedAt: o.now, ExpiresAt: in.ExpiresAt}
		if in.Organization != "" {
			org, err := resolveOrg(ctx, tx, in.Organization)
			if errors.Is(err, trellis.ErrNotFound) {
				return trellis.Invalid("organization", "no organization %q", in.Organization)
			} else if err != nil {
				return err
			}
			k.Org = org.ID
		}
		if in.RateLimit != nil {
			k.RatePerSecond, k.Burst = in.RateLimit.PerSecond, in.RateLimit.Burst
		}
		var err error
		out, err = s.mintProviderKey(ctx, tx, o, k)
		return err
	})
	return out, err
}

func (s *Service) mintProviderKey(ctx context.Context, tx store.Tx, o *op, k store.ProviderKey) (ProviderAPIKey, error) {
	secret := newSecret()
	k.Hash = tokenHash(secret)
	if err := tx.InsertProviderKey(ctx, k); err != nil {
		return ProviderAPIKey{}, err
	}
	details := map[string]any{"key": k.ID, "name": k.Name, "scopes": k.Scopes}
	if k.Org != "" {
		details["organization"] = k.Org
	}
	o.record("", "provider_key.create", "api_key:"+k.ID, details)
	v := s.providerKeyView(k)
	v.Secret = providerKeyPrefix + k.ID + "." + secret
	return v, nil
}

// ListProviderKeys lists every provider API key (never their secrets).
func (s *Service) ListProviderKeys(ctx context.Context, p Principal) ([]ProviderAPIKey, error) {
	if err := s.keyManager(ctx, p); err != nil {
		return nil, err
	}
	out := []ProviderAPIKey{}
	err := s.read(ctx, func(tx store.Tx) error {
		keys, err := tx.ListProviderKeys(ctx)
		for _, k := range keys {
			out = append(out, s.providerKeyView(k))
		}
		return err
	})
	return out, err
}

// RotateProviderKey mints a successor with the same name, scopes,
// organization and rate; the old key keeps working for the overlap window
// (default 24h, 0 = stops now).
func (s *Service) RotateProviderKey(ctx context.Context, p Principal, id string, in RotateAPIKey) (ProviderAPIKey, error) {
	overlap := defaultOverlap
	if in.OverlapSeconds != nil {
		overlap = time.Duration(*in.OverlapSeconds) * time.Second
		if *in.OverlapSeconds < 0 || overlap > maxOverlap {
			return ProviderAPIKey{}, trellis.Invalid("overlapSeconds", "must be between 0 and %d", int(maxOverlap.Seconds()))
		}
	}
	if err := s.keyManager(ctx, p); err != nil {
		return ProviderAPIKey{}, err
	}
	var out ProviderAPIKey
	err := s.run(ctx, p, "provider_key.rotate", func(tx store.Tx, o *op) error {
		old, err := tx.GetProviderKey(ctx, id)
		if err != nil {
			return err
		}
		if v := s.providerKeyView(old); v.Status != "active" {
			return trellis.Conflict("key_"+v.Status, "API key %s is %s", id, v.Status)
		}
		until := o.now.Add(overlap)
		successor := old
		successor.ID, successor.CreatedAt, successor.CreatedBy, successor.LastUsedAt = newID("pk"), o.now, p.Actor(), nil
		if old.ExpiresAt == nil || until.Before(*old.ExpiresAt) {
			old.ExpiresAt = &until
		}
		if err := tx.UpdateProviderKey(ctx, old); err != nil {
			return err
		}
		if out, err = s.mintProviderKey(ctx, tx, o, successor); err != nil {
			return err
		}
		o.record("", "provider_key.rotate", "api_key:"+old.ID, map[string]any{"key": old.ID, "successor": out.ID, "oldKeyExpiresAt": until.Format(time.RFC3339)})
		return nil
	})
	s.forgetProviderKeys()
	return out, err
}

// RevokeProviderKey stops a key at once (on this node; other nodes within
// the authentication cache's 10 s).
func (s *Service) RevokeProviderKey(ctx context.Context, p Principal, id string) error {
	if err := s.keyManager(ctx, p); err != nil {
		return err
	}
	err := s.run(ctx, p, "provider_key.revoke", func(tx store.Tx, o *op) error {
		k, err := tx.GetProviderKey(ctx, id)
		if err != nil {
			return err
		}
		if k.RevokedAt == nil {
			k.RevokedAt = &o.now
			if err := tx.UpdateProviderKey(ctx, k); err != nil {
				return err
			}
			o.record("", "provider_key.revoke", "api_key:"+k.ID, map[string]any{"key": k.ID, "name": k.Name})
		}
		return nil
	})
	s.forgetProviderKeys()
	return err
}

// IsProviderKey tells provider API keys from other bearer tokens.
func IsProviderKey(token string) bool { return strings.HasPrefix(token, providerKeyPrefix) }

// authedKey is a cached authentication: the key's row as read, and when the
// cache must read it again.
type authedKey struct {
	mu    sync.Mutex
	row   store.ProviderKey
	until time.Time
}

type providerKeyCache struct {
	once    sync.Once
	entries *lru.Cache[[32]byte, *authedKey]
}

func (c *providerKeyCache) get() *lru.Cache[[32]byte, *authedKey] {
	c.once.Do(func() { c.entries, _ = lru.New[[32]byte, *authedKey](4096) })
	return c.entries
}

func (s *Service) forgetProviderKeys() { s.keyCache.get().Purge() }

// AuthenticateProviderKey turns a provider API key into its principal and
// grant. Every failure is the same ErrUnauthenticated. A key authenticated in
// the last 10 s is answered from memory (the check path's speed); its
// last-used time is written at most once a minute.
func (s *Service) AuthenticateProviderKey(ctx context.Context, raw string) (Principal, *KeyGrant, error) {
	fail := fmt.Errorf("%w: invalid API key", trellis.ErrUnauthenticated)
	id, secret, ok := strings.Cut(strings.TrimPrefix(raw, providerKeyPrefix), ".")
	if !IsProviderKey(raw) || !ok || id == "" || secret == "" {
		return Principal{}, nil, fail
	}
	now := s.cfg.Now().UTC()
	sum := sha256.Sum256([]byte(raw))
	cache := s.keyCache.get()
	e, hit := cache.Get(sum)
	if hit {
		e.mu.Lock()
		hit = now.Before(e.until)
		e.mu.Unlock()
	}
	if !hit {
		var k store.ProviderKey
		err := s.read(ctx, func(tx store.Tx) (err error) {
			k, err = tx.GetProviderKey(ctx, id)
			return err
		})
		if errors.Is(err, trellis.ErrNotFound) {
			return Principal{}, nil, fail
		} else if err != nil {
			return Principal{}, nil, err
		}
		if subtle.ConstantTimeCompare(tokenHash(secret), k.Hash) != 1 {
			return Principal{}, nil, fail
		}
		e = &authedKey{row: k, until: now.Add(providerKeyCacheTTL)}
		cache.Add(sum, e)
	}
	e.mu.Lock()
	k := e.row
	stale := k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= lastUsedEvery
	if stale {
		e.row.LastUsedAt = &now // one writer per minute per key and node
	}
	e.mu.Unlock()
	if s.providerKeyView(k).Status != "active" {
		return Principal{}, nil, fail
	}
	if stale {
		_ = s.store.InTx(ctx, func(tx store.Tx) error {
			cur, err := tx.GetProviderKey(ctx, id)
			if err != nil {
				return err
			}
			cur.LastUsedAt = &now
			return tx.UpdateProviderKey(ctx, cur)
		})
	}
	g := &KeyGrant{ID: k.ID, Name: k.Name, Scopes: k.Scopes, Org: k.Org}
	if k.RatePerSecond > 0 {
		g.RateLimit = &RateLimit{PerSecond: k.RatePerSecond, Burst: k.Burst}
	}
	return Principal{Kind: KindProvider, ID: k.ID, KeyID: k.ID}, g, nil
}
