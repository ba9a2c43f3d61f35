package postgres

import (
	"context"

	"github.com/trellis-iam/trellis/store"
)

const providerKeySelect = `SELECT id, name, hash, scopes, org, created_by, created_at, expires_at, last_used_at, revoked_at,
	rate_per_second, burst FROM provider_api_keys `

func scanProviderKey(r scanner) (store.ProviderKey, error) {
	var k store.ProviderKey
	err := r.Scan(&k.ID, &k.Name, &k.Hash, &k.Scopes, &k.Org, &k.CreatedBy, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt,
		&k.RevokedAt, &k.RatePerSecond, &k.Burst)
	return k, err
}

func (t *tx) GetProviderKey(ctx context.Context, id string) (store.ProviderKey, error) {
	return one(ctx, t, "get provider API key", func() error { return notFound("API key", id) }, scanProviderKey,
		providerKeySelect+`WHERE id = $1`, id)
}

func (t *tx) ListProviderKeys(ctx context.Context) ([]store.ProviderKey, error) {
	return all(ctx, t, "list provider API keys", scanProviderKey, providerKeySelect+`ORDER BY id`)
}

func (t *tx) InsertProviderKey(ctx context.Context, k store.ProviderKey) error {
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	_, err := t.exec(ctx, "insert provider API key",
		`INSERT INTO provider_api_keys (id, name, hash, scopes, org, created_by, created_at, expires_at, last_used_at,
			revoked_at, rate_per_second, burst)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		k.ID, k.Name, k.Hash, k.Scopes, k.Org, k.CreatedBy, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt,
		k.RatePerSecond, k.Burst)
	return err
}

func (t *tx) UpdateProviderKey(ctx context.Context, k store.ProviderKey) error {
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	return t.update(ctx, "API key", k.ID,
		`UPDATE provider_api_keys SET name = $2, hash = $3, scopes = $4, org = $5, created_by = $6, created_at = $7,
			expires_at = $8, last_used_at = $9, revoked_at = $10, rate_per_second = $11, burst = $12
		WHERE id = $1`,
		k.ID, k.Name, k.Hash, k.Scopes, k.Org, k.CreatedBy, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt,
		k.RatePerSecond, k.Burst)
}
