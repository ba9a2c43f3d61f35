package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// Fixtures for a store's own tests, beyond what the suite runs.

// At is the suite's clock: minute m after a fixed time that is already at
// microsecond precision.
func At(minute int) time.Time { return at(minute) }

// Org is a minimal active organization row: no parent, domains or maps.
func Org(id, slug string) store.Org { return orgRow(id, slug, "Org "+slug, "") }

// MustTx runs fn in an InTx on t's context and fails t if the transaction fails.
func MustTx(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

// MustRead runs fn in a Read on t's context and fails t if the read fails.
func MustRead(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.Read(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

// Head reads the head of org's audit chain.
func Head(t *testing.T, s store.Store, org string) audit.Head {
	t.Helper()
	var h audit.Head
	MustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		h, err = tx.AuditHead(ctx, org)
		return err
	})
	return h
}

// chainEvent is event for the chains below: minute seq, action member.put.
func chainEvent(org string, seq int64, actor string) audit.Event {
	return event(org, seq, int(seq), actor, "member.put")
}

// chainFixture appends org_a1 seqs 1..3 with an org_b2 event in between.
func chainFixture(t *testing.T, s store.Store) {
	t.Helper()
	for _, ev := range []audit.Event{
		chainEvent("org_a1", 1, "usr_a1"), chainEvent("org_b2", 1, "usr_b2"),
		chainEvent("org_a1", 2, "usr_a1"), chainEvent("org_a1", 3, "usr_a1"),
	} {
		MustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendAudit(ctx, ev) })
	}
}

// chainSeqs reads the seqs of org's audit chain, in stored order.
func chainSeqs(t *testing.T, s store.Store, org string) []int64 {
	t.Helper()
	var out []int64
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		chain, err := tx.AuditChain(ctx, org)
		for _, ev := range chain {
			out = append(out, ev.Seq)
		}
		return err
	})
	return out
}
