package store

import (
	"context"
	"time"
)

// ProviderKey is a provider API key: a scoped key of the provider itself, not
// of any organization's service account (POST /v1/api-keys). Only the SHA-256
// of the secret is stored. Org, when set, confines the key to that
// organization's subtree. RatePerSecond and Burst, when positive, bound how
// fast the key may call (a token bucket per key).
type ProviderKey struct {
	ID            string
	Name          string
	Hash          []byte
	Scopes        []string
	Org           string
	CreatedBy     string
	CreatedAt     time.Time
	ExpiresAt     *time.Time
	LastUsedAt    *time.Time
	RevokedAt     *time.Time
	RatePerSecond float64
	Burst         int
}

// ProviderKeyRows are the provider API key table.
type ProviderKeyRows interface {
	GetProviderKey(ctx context.Context, id string) (ProviderKey, error)
	// ListProviderKeys sorts by id.
	ListProviderKeys(ctx context.Context) ([]ProviderKey, error)
	InsertProviderKey(ctx context.Context, k ProviderKey) error
	UpdateProviderKey(ctx context.Context, k ProviderKey) error
}
