package api_test

import (
	"context"
	"testing"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// storedChain reads org's chain and head straight from the harness's store.
func storedChain(h *harness, org string) ([]audit.Event, audit.Head) {
	h.t.Helper()
	var events []audit.Event
	var head audit.Head
	if err := h.store.Read(context.Background(), func(tx store.Tx) (err error) {
		if events, err = tx.AuditChain(context.Background(), org); err != nil {
			return err
		}
		head, err = tx.AuditHead(context.Background(), org)
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	return events, head
}

// rewriteAudit plays a database writer without the audit key: it edits event
// seq of org's chain, recomputes its hash and every later one, and moves the
// head's hash along (leaving the checkpoints, which it cannot compute). The
// unkeyed chain verifies again afterwards.
func rewriteAudit(h *harness, org string, seq int64, edit func(*audit.Event)) {
	h.t.Helper()
	events, _ := storedChain(h, org)
	prev := ""
	for _, ev := range events {
		if ev.Seq < seq {
			prev = ev.Hash
			continue
		}
		if err := h.store.TamperAudit(org, ev.Seq, func(e *audit.Event) {
			if e.Seq == seq {
				edit(e)
			}
			e.PrevHash = prev
			e.Hash = audit.HashOf(*e)
			prev = e.Hash
		}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.store.TamperAuditHead(org, func(hd *audit.Head) { hd.Hash = prev }); err != nil {
		h.t.Fatal(err)
	}
	if v := audit.Verify(storedChain(h, org)); !v.Valid {
		h.t.Fatalf("the rewritten chain of %q does not pass the unkeyed check (%+v): the test is not playing the attack", org, v)
	}
}

// TestFinding12AuditRewriteDetected is issue 13's finding 12 (audit part): the
// hash chain was unkeyed, so anyone with write access to the database could
// rewrite an event and recompute every hash after it and the head, and verify
// said valid. Checkpoints are now signed with a key the database does not
// hold: verify breaks at the rewritten event, and at the head when the tail
// is deleted and the head moved back.
func TestFinding12AuditRewriteDetected(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	verify := func(org string) map[string]any {
		t.Helper()
		return p.do(200, "GET", "/v1/organizations/"+org+"/audit/verify", nil)
	}
	if v := verify("customer"); v["valid"] != true {
		t.Fatalf("customer chain before the attack: %v", v)
	}

	// rewrite who added the customer admin, hashes recomputed
	events, _ := storedChain(h, tr.customer)
	var k int64
	for _, ev := range events {
		if ev.Action == "member.add" && ev.Target == "user:"+tr.customerAdmin {
			k = ev.Seq
		}
	}
	if k == 0 || k == int64(len(events)) {
		t.Fatalf("want the customer admin's member.add inside the chain of %d events, found seq %d", len(events), k)
	}
	rewriteAudit(h, tr.customer, k, func(ev *audit.Event) { ev.Actor = "user:mallory" })
	v := verify("customer")
	wantEqual(t, "verify after a rewrite with recomputed hashes", []any{v["valid"], v["brokenAt"]}, []any{false, float64(k)})

	// delete the reseller's newest event and move the head back onto the one before
	rEvents, rHead := storedChain(h, tr.reseller)
	last := rHead.Seq
	if err := h.store.DeleteAuditEvent(tr.reseller, last); err != nil {
		t.Fatal(err)
	}
	kept := rEvents[last-2]
	if err := h.store.TamperAuditHead(tr.reseller, func(hd *audit.Head) {
		*hd = audit.Head{Seq: kept.Seq, Hash: kept.Hash, Checkpoint: kept.Checkpoint}
	}); err != nil {
		t.Fatal(err)
	}
	if v := audit.Verify(storedChain(h, tr.reseller)); !v.Valid {
		t.Fatalf("the truncated chain fails the unkeyed check (%+v): the test is not playing the attack", v)
	}
	v = verify("reseller")
	wantEqual(t, "verify after deleting the tail", []any{v["valid"], v["brokenAt"]}, []any{false, float64(kept.Seq)})

	// the other chains are untouched
	wantEqual(t, "region chain", verify("region")["valid"], true)
}

// TestPlatformAuditVerify: GET /v1/audit/verify verifies the platform chain
// (events on no organization, e.g. user creation) for provider admins and
// platform auditors only.
func TestPlatformAuditVerify(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	events, _ := storedChain(h, "")
	if len(events) < 5 {
		t.Fatalf("the platform chain holds %d events, want the tree's user creations", len(events))
	}
	wantEqual(t, "platform verify", p.do(200, "GET", "/v1/audit/verify", nil), map[string]any{"valid": true, "events": float64(len(events))})

	// who may
	auditor := createUser(h, "pia@provider.example")
	h.write(rel("platform:trellis", "auditor", "user:"+auditor)) // the directory has no endpoint for platform staff yet
	wantEqual(t, "platform auditor's verify", h.as(h.token(auditor, "")).do(200, "GET", "/v1/audit/verify", nil)["valid"], true)
	h.as(tr.customerToken).fails(403, "forbidden", "", "GET", "/v1/audit/verify", nil)
	h.as(tr.resellerToken).fails(403, "forbidden", "", "GET", "/v1/audit/verify", nil)
	h.as(h.token(tr.customerMember, "")).fails(403, "forbidden", "", "GET", "/v1/audit/verify", nil)
	h.as("").fails(401, "unauthenticated", "", "GET", "/v1/audit/verify", nil)

	// a rewrite of the platform chain, hashes recomputed, breaks it there
	rewriteAudit(h, "", 2, func(ev *audit.Event) { ev.Target = "user:mallory" })
	v := p.do(200, "GET", "/v1/audit/verify", nil)
	wantEqual(t, "platform verify after a rewrite", []any{v["valid"], v["brokenAt"]}, []any{false, float64(2)})
}
