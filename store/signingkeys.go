package store

import (
	"context"
	"time"
)

// SigningKey is one token-signing key pair shared by every node. The store
// never sees the private key in the clear: Sealed is it encrypted under the
// key-encryption key of the configuration (federation seals and opens it).
type SigningKey struct {
	ID        string // the JWK key id (kid)
	Algorithm string // JOSE algorithm, e.g. ES256
	Sealed    []byte
	CreatedAt time.Time // signing with it starts here
}

// SigningKeyRows are the signing key table.
type SigningKeyRows interface {
	// ListSigningKeys lists every key, newest first (CreatedAt, then ID). In
	// a write transaction it also takes the key lock, so that two nodes
	// rotating at once add one key, not two.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// InsertSigningKey stores k; an existing k.ID is ErrConflict.
	InsertSigningKey(ctx context.Context, k SigningKey) error
	// DeleteSigningKey removes key id (no longer published); ErrNotFound when absent.
	DeleteSigningKey(ctx context.Context, id string) error
}
