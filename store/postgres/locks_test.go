package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// TestConfinedWritersOfTwoTenantsRunTogether: while a transaction confined
// to tenant A is open, one confined to tenant B commits; an unconfined writer
// waits for both. If confined writers were serialized, B would wait for A,
// which waits for B to finish: B's deadline would end it.
func TestConfinedWritersOfTwoTenantsRunTogether(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	aOpen, bDone := make(chan struct{}), make(chan struct{})
	aErr := make(chan error, 1)
	go func() {
		aErr <- s.InTx(store.WithTenants(ctx, "org_a"), func(tx store.Tx) error {
			if err := tx.AppendAudit(ctx, sealed(t, tx, "org_a")); err != nil {
				return err
			}
			close(aOpen)
			<-bDone
			return nil
		})
	}()
	<-aOpen
	bctx, cancel := context.WithTimeout(store.WithTenants(ctx, "org_b"), 10*time.Second)
	defer cancel()
	err := s.InTx(bctx, func(tx store.Tx) error {
		// B's own rows, no audit tail: A holds the append lock until it commits
		return tx.InsertOrg(bctx, store.Org{ID: "org_b", Slug: "b", Name: "B", Status: store.StatusActive, CreatedAt: at0, UpdatedAt: at0})
	})
	close(bDone)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(bctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("tenant B's writer waited for tenant A's: confined writers are serialized (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := <-aErr; err != nil {
		t.Fatal(err)
	}
}

var at0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sealed(t *testing.T, tx store.Tx, org string) audit.Event {
	t.Helper()
	head, err := tx.AuditHead(t.Context(), org)
	if err != nil {
		t.Fatal(err)
	}
	ev := audit.Event{At: at0, Actor: "provider:test", Action: "test", Target: "organization:" + org, Organization: org}
	audit.Key("0123456789abcdef0123456789abcdef").Seal(head, &ev)
	return ev
}
