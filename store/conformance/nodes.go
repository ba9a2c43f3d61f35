package conformance

import (
	"context"
	"errors"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// testOutboxClaim: inside a claim, pending entries list in seq order and
// marks are visible to ordinary transactions as soon as they are made.
func testOutboxClaim(t *testing.T, s store.Store) {
	e1 := appendOutbox(t, s, outboxEntry("organization.create"))
	e2 := appendOutbox(t, s, outboxEntry("member.put"))
	e3 := appendOutbox(t, s, outboxEntry("member.delete"))
	err := s.ClaimOutbox(t.Context(), func(c store.OutboxClaim) error {
		p, err := c.PendingOutbox(t.Context(), 2)
		if err != nil {
			return err
		}
		wantKeys(t, "claim PendingOutbox limit 2", keys(p, outboxAction), []string{"organization.create", "member.put"})
		if err := c.MarkOutboxApplied(t.Context(), []int64{e1, e2}, "rev-12", at(20)); err != nil {
			return err
		}
		same(t, "OutboxApplied during the claim", get(t, s, store.Tx.OutboxApplied, e2), true)
		wantErr(t, "MarkOutboxApplied unknown", c.MarkOutboxApplied(t.Context(), []int64{e3 + 1000}, "rev-x", at(21)), trellis.ErrNotFound)
		p, err = c.PendingOutbox(t.Context(), 0)
		if err != nil {
			return err
		}
		wantKeys(t, "claim PendingOutbox after marks", keys(p, outboxAction), []string{"member.delete"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pending := get(t, s, store.Tx.PendingOutbox, 0)
	if len(pending) != 1 || pending[0].Seq != e3 {
		t.Fatalf("pending after the claim = %+v, want only entry %d", pending, e3)
	}
	// a second claim after the first returned is granted (the lock was released)
	if err := s.ClaimOutbox(t.Context(), func(store.OutboxClaim) error { return nil }); err != nil {
		t.Fatalf("second claim: %v", err)
	}
}

func testSchemaVersions(t *testing.T, s store.Store) {
	_, err := read0(t, s, store.Tx.LatestSchemaVersion)
	wantErr(t, "LatestSchemaVersion empty", err, trellis.ErrNotFound)
	v1 := store.SchemaVersion{Version: 1, AppText: "", Text: "definition user {}", AppliedAt: at(1), AppliedBy: "system", WrittenAt: "tok1"}
	v2 := store.SchemaVersion{Version: 2, AppText: "definition doc {}", Text: "definition user {}\ndefinition doc {}", AppliedAt: at(2), AppliedBy: "provider:admin", WrittenAt: "tok2"}
	for _, v := range []store.SchemaVersion{v1, v2} {
		mustTx(t, s, func(tx store.Tx) error {
			if _, err := tx.LatestSchemaVersion(t.Context()); err != nil && v.Version > 1 {
				return err
			}
			return tx.InsertSchemaVersion(t.Context(), v)
		})
	}
	same(t, "LatestSchemaVersion", must0(t, s, store.Tx.LatestSchemaVersion), v2)
	same(t, "GetSchemaVersion 1", get(t, s, store.Tx.GetSchemaVersion, 1), v1)
	_, err = call(t, s, store.Tx.GetSchemaVersion, 3)
	wantErr(t, "GetSchemaVersion unknown", err, trellis.ErrNotFound)
	same(t, "ListSchemaVersions", must0(t, s, store.Tx.ListSchemaVersions), []store.SchemaVersion{v1, v2})
	wantErr(t, "InsertSchemaVersion existing", s.InTx(t.Context(), func(tx store.Tx) error {
		return tx.InsertSchemaVersion(t.Context(), v2)
	}), trellis.ErrConflict)
	skip := v2
	skip.Version = 5
	var ve *trellis.ValidationError
	err = s.InTx(t.Context(), func(tx store.Tx) error { return tx.InsertSchemaVersion(t.Context(), skip) })
	if !errors.As(err, &ve) || ve.Field != "version" {
		t.Errorf("InsertSchemaVersion with a gap = %v, want a validation error on version", err)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	same(t, "ListSigningKeys empty", len(must0(t, s, store.Tx.ListSigningKeys)), 0)
	k1 := store.SigningKey{ID: "kid-1", Algorithm: "ES256", Sealed: []byte{1, 2, 3}, CreatedAt: at(1)}
	k2 := store.SigningKey{ID: "kid-2", Algorithm: "ES256", Sealed: []byte{4, 5}, CreatedAt: at(2)}
	for _, k := range []store.SigningKey{k1, k2} {
		mustTx(t, s, func(tx store.Tx) error {
			if _, err := tx.ListSigningKeys(t.Context()); err != nil {
				return err
			}
			return tx.InsertSigningKey(t.Context(), k)
		})
	}
	same(t, "ListSigningKeys newest first", must0(t, s, store.Tx.ListSigningKeys), []store.SigningKey{k2, k1})
	wantErr(t, "InsertSigningKey existing", s.InTx(t.Context(), func(tx store.Tx) error {
		return tx.InsertSigningKey(t.Context(), k1)
	}), trellis.ErrConflict)
	mustTx(t, s, func(tx store.Tx) error { return tx.DeleteSigningKey(t.Context(), k1.ID) })
	same(t, "ListSigningKeys after delete", must0(t, s, store.Tx.ListSigningKeys), []store.SigningKey{k2})
	wantErr(t, "DeleteSigningKey unknown", s.InTx(t.Context(), func(tx store.Tx) error {
		return tx.DeleteSigningKey(t.Context(), k1.ID)
	}), trellis.ErrNotFound)
}

// read0 calls a method without arguments in a read transaction.
func read0[T any](t *testing.T, s store.Store, m func(store.Tx, context.Context) (T, error)) (T, error) {
	t.Helper()
	var out T
	err := s.Read(t.Context(), func(tx store.Tx) error {
		var err error
		out, err = m(tx, t.Context())
		return err
	})
	return out, err
}

func must0[T any](t *testing.T, s store.Store, m func(store.Tx, context.Context) (T, error)) T {
	t.Helper()
	out, err := read0(t, s, m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
