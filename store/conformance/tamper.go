package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// Tamperer is a store with the test hooks that play an attacker with raw
// access to storage, for tests of audit verification. They are no part of
// store.Store; every store has them.
type Tamperer interface {
	store.Store
	// TamperAudit lets mutate edit the stored event seq of org's chain in
	// place, leaving the head alone; the event stays in org's chain and in
	// its place in the log.
	TamperAudit(org string, seq int64, mutate func(ev *audit.Event)) error
	// DeleteAuditEvent removes the stored event seq of org's chain from the
	// chain and the log, leaving the head alone.
	DeleteAuditEvent(org string, seq int64) error
	// TamperAuditHead lets mutate edit org's stored head (seq, hash,
	// checkpoint) in place; org must have one.
	TamperAuditHead(org string, mutate func(h *audit.Head)) error
}

// RunTamper runs the tests of the Tamperer hooks. newStore is as for Run.
func RunTamper(t *testing.T, newStore func(t *testing.T) Tamperer) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Tamperer)
	}{
		{"TamperAudit", testTamperAudit},
		{"DeleteAuditEvent", testDeleteAuditEvent},
		{"TamperAuditHead", testTamperAuditHead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func testTamperAudit(t *testing.T, s Tamperer) {
	chainFixture(t, s)
	var kept map[string]any
	err := s.TamperAudit("org_a1", 2, func(ev *audit.Event) {
		ev.Actor = "usr_mallory"
		ev.Details["via"] = "backdoor"
		kept = ev.Details
	})
	if err != nil {
		t.Fatal(err)
	}
	kept["via"] = "edited after the fact" // mutate's leftovers do not alias the store

	var chain []audit.Event
	MustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		chain, err = tx.AuditChain(ctx, "org_a1")
		return err
	})
	if len(chain) != 3 || chain[1].Actor != "usr_mallory" || chain[1].Details["via"] != "backdoor" || chain[1].Hash != "hash-org_a1-2" {
		t.Errorf("chain after tampering: %+v", chain)
	}
	evs, _ := get2(t, s, store.AuditFilter{AllOrgs: true, Actor: "usr_mallory"})
	if len(evs) != 1 || evs[0].Seq != 2 || evs[0].Organization != "org_a1" || evs[0].Details["via"] != "backdoor" {
		t.Errorf("global log after tampering: %+v", evs)
	}
	if h := Head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "hash-org_a1-3"}) {
		t.Errorf("head moved: %+v", h)
	}
	noop := func(*audit.Event) {}
	if err := s.TamperAudit("org_a1", 9, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown seq: %v", err)
	}
	if err := s.TamperAudit("org_zz", 1, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown org: %v", err)
	}

	// moving an event to another organization keeps it in its chain, where Verify sees it
	if err := s.TamperAudit("org_a1", 3, func(ev *audit.Event) { ev.Organization = "org_b2" }); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 2 3]" {
		t.Errorf("chain after moving an event: %s", got)
	}
	if evs, _ := get2(t, s, store.AuditFilter{Org: "org_b2"}); len(evs) != 2 {
		t.Errorf("org_b2's events after the move: %d, want 2", len(evs))
	}
}

func testDeleteAuditEvent(t *testing.T, s Tamperer) {
	chainFixture(t, s)
	if err := s.DeleteAuditEvent("org_a1", 2); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 3]" {
		t.Errorf("chain after deleting seq 2: %s", got)
	}
	evs, _ := get2(t, s, store.AuditFilter{AllOrgs: true})
	if got := fmt.Sprint(keys(evs, eventHash)); got != "[hash-org_a1-1 hash-org_b2-1 hash-org_a1-3]" {
		t.Errorf("global log after deleting seq 2: %s", got)
	}
	if err := s.DeleteAuditEvent("org_a1", 2); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("DeleteAuditEvent twice: %v", err)
	}

	// truncating the tail leaves the head ahead of the chain, for Verify to see
	if err := s.DeleteAuditEvent("org_a1", 3); err != nil {
		t.Fatal(err)
	}
	if h := Head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "hash-org_a1-3"}) {
		t.Errorf("head after truncation: %+v", h)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1]" {
		t.Errorf("chain after truncation: %s", got)
	}
	// appends still follow the head, not the damaged chain
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendAudit(ctx, chainEvent("org_a1", 4, "usr_a1"))
	})
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 4]" {
		t.Errorf("chain after a later append: %s", got)
	}
}

func testTamperAuditHead(t *testing.T, s Tamperer) {
	chainFixture(t, s)
	err := s.TamperAuditHead("org_a1", func(h *audit.Head) {
		*h = audit.Head{Seq: 2, Hash: "hash-org_a1-2", Checkpoint: "forged"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := Head(t, s, "org_a1"); h != (audit.Head{Seq: 2, Hash: "hash-org_a1-2", Checkpoint: "forged"}) {
		t.Errorf("head after tampering: %+v", h)
	}
	if h := Head(t, s, "org_b2"); h != (audit.Head{Seq: 1, Hash: "hash-org_b2-1"}) {
		t.Errorf("another chain's head moved: %+v", h)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 2 3]" {
		t.Errorf("the events moved with the head: %s", got)
	}
	if err := s.TamperAuditHead("org_zz", func(*audit.Head) {}); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAuditHead of a chain without a head: %v", err)
	}
}
