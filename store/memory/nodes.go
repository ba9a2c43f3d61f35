package memory

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// ClaimOutbox runs fn as the outbox's only applier: one claim at a time per
// Store, which is every user of this process's data.
func (s *Store) ClaimOutbox(ctx context.Context, fn func(c store.OutboxClaim) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.relay.Lock()
	defer s.relay.Unlock()
	return fn(outboxClaim{s})
}

type outboxClaim struct{ s *Store }

func (c outboxClaim) PendingOutbox(ctx context.Context, limit int) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	err := c.s.Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.PendingOutbox(ctx, limit)
		return err
	})
	return out, err
}

func (c outboxClaim) MarkOutboxApplied(ctx context.Context, seqs []int64, revision string, at time.Time) error {
	return c.s.InTx(ctx, func(tx store.Tx) error {
		for _, seq := range seqs {
			if err := tx.MarkApplied(ctx, seq, revision, at); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---- schema versions (the write lock already serializes appliers)

func (t *tx) LatestSchemaVersion(context.Context) (store.SchemaVersion, error) {
	if len(t.schemaVersions) == 0 {
		return store.SchemaVersion{}, fmt.Errorf("%w: no schema version", trellis.ErrNotFound)
	}
	return t.schemaVersions[len(t.schemaVersions)-1], nil
}

func (t *tx) GetSchemaVersion(_ context.Context, version int) (store.SchemaVersion, error) {
	if version < 1 || version > len(t.schemaVersions) {
		return store.SchemaVersion{}, fmt.Errorf("%w: schema version %d", trellis.ErrNotFound, version)
	}
	return t.schemaVersions[version-1], nil
}

func (t *tx) ListSchemaVersions(context.Context) ([]store.SchemaVersion, error) {
	return append([]store.SchemaVersion(nil), t.schemaVersions...), nil
}

func (t *tx) InsertSchemaVersion(_ context.Context, v store.SchemaVersion) error {
	if err := t.writable(); err != nil {
		return err
	}
	switch n := len(t.schemaVersions); {
	case v.Version >= 1 && v.Version <= n:
		return fmt.Errorf("%w: schema version %d exists", trellis.ErrConflict, v.Version)
	case v.Version != n+1:
		return trellis.Invalid("version", "must be %d, the next version, got %d", n+1, v.Version)
	}
	v.AppliedAt = v.AppliedAt.UTC()
	n := len(t.schemaVersions)
	t.schemaVersions = append(t.schemaVersions, v)
	t.undo = append(t.undo, func() { t.schemaVersions = t.schemaVersions[:n] })
	return nil
}

// ---- signing keys

func (t *tx) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	out := make([]store.SigningKey, 0, len(t.signingKeys))
	for _, k := range t.signingKeys {
		k.Sealed = append([]byte(nil), k.Sealed...)
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func (t *tx) InsertSigningKey(_ context.Context, k store.SigningKey) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.signingKeys[k.ID]; ok {
		return fmt.Errorf("%w: signing key %q exists", trellis.ErrConflict, k.ID)
	}
	k.Sealed = append([]byte(nil), k.Sealed...)
	k.CreatedAt = k.CreatedAt.UTC()
	t.signingKeys[k.ID] = k
	t.undo = append(t.undo, func() { delete(t.signingKeys, k.ID) })
	return nil
}

func (t *tx) DeleteSigningKey(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.signingKeys[id]
	if !ok {
		return fmt.Errorf("%w: signing key %q", trellis.ErrNotFound, id)
	}
	delete(t.signingKeys, id)
	t.undo = append(t.undo, func() { t.signingKeys[id] = old })
	return nil
}
