package memory

import (
	"bytes"
	"context"
	"slices"

	"github.com/trellis-iam/trellis/store"
)

func (t *tx) GetProviderKey(_ context.Context, id string) (store.ProviderKey, error) {
	return getRow(t.providerKeys, id, cloneProviderKey, "API key")
}

func (t *tx) ListProviderKeys(_ context.Context) ([]store.ProviderKey, error) {
	keep := func(store.ProviderKey) bool { return true }
	return list(t.providerKeys, keep, func(k store.ProviderKey) string { return k.ID }, store.Page{}, cloneProviderKey), nil
}

func (t *tx) InsertProviderKey(_ context.Context, k store.ProviderKey) error {
	return insertRow(t, t.providerKeys, k.ID, cloneProviderKey(k), "API key")
}

func (t *tx) UpdateProviderKey(_ context.Context, k store.ProviderKey) error {
	return updateRow(t, t.providerKeys, k.ID, cloneProviderKey(k), "API key")
}

func cloneProviderKey(k store.ProviderKey) store.ProviderKey {
	k.Hash = bytes.Clone(k.Hash)
	k.Scopes = slices.Clone(k.Scopes)
	k.ExpiresAt = clonePtr(k.ExpiresAt)
	k.LastUsedAt = clonePtr(k.LastUsedAt)
	k.RevokedAt = clonePtr(k.RevokedAt)
	return k
}
