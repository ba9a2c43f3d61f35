package conformance

import (
	"context"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

func providerKeyRow(id, org string) store.ProviderKey {
	return store.ProviderKey{ID: id, Name: "app " + id, Hash: sha("secret-" + id), Scopes: []string{"check"}, Org: org,
		CreatedBy: "provider:admin-key", CreatedAt: at(0), ExpiresAt: ptr(at(60 * 24 * 90)), RatePerSecond: 50, Burst: 100}
}

func listProviderKeys(tx store.Tx, ctx context.Context, _ struct{}) ([]store.ProviderKey, error) {
	return tx.ListProviderKeys(ctx)
}

func testProviderKeys(t *testing.T, s store.Store) {
	same(t, "ListProviderKeys empty", len(get(t, s, listProviderKeys, struct{}{})), 0)
	k2 := providerKeyRow("pk_b2", "org_a1")
	k1 := providerKeyRow("pk_a1", "")
	k1.ExpiresAt, k1.Scopes, k1.RatePerSecond, k1.Burst = nil, []string{"schema:read", "relationships:write"}, 0, 0
	for _, k := range []store.ProviderKey{k2, k1} {
		do(t, s, store.Tx.InsertProviderKey, k)
	}
	same(t, "GetProviderKey", get(t, s, store.Tx.GetProviderKey, "pk_b2"), k2)
	same(t, "GetProviderKey unbound", get(t, s, store.Tx.GetProviderKey, "pk_a1"), k1)
	same(t, "ListProviderKeys sorted by id", get(t, s, listProviderKeys, struct{}{}), []store.ProviderKey{k1, k2})

	_, err := call(t, s, store.Tx.GetProviderKey, "pk_zz")
	wantErr(t, "GetProviderKey unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertProviderKey duplicate id", exec(t, s, store.Tx.InsertProviderKey, providerKeyRow("pk_a1", "")), trellis.ErrConflict)
	wantErr(t, "UpdateProviderKey unknown", exec(t, s, store.Tx.UpdateProviderKey, providerKeyRow("pk_zz", "")), trellis.ErrNotFound)

	used := k2
	used.LastUsedAt, used.RevokedAt, used.ExpiresAt, used.Hash = ptr(at(15)), ptr(at(16)), ptr(at(17)), sha("rotated")
	do(t, s, store.Tx.UpdateProviderKey, used)
	same(t, "GetProviderKey after update", get(t, s, store.Tx.GetProviderKey, "pk_b2"), used)
}
