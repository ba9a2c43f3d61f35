package conformance

import (
	"testing"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// testAuditCheckpoints: an event's checkpoint is stored with the event and its
// HeadCheckpoint with the head only (docs/decisions/0011-keyed-audit-checkpoints.md).
func testAuditCheckpoints(t *testing.T, s store.Store) {
	key := audit.Key("conformance-key-0123456789abcdef")
	var head audit.Head
	var sealed []audit.Event
	for seq := int64(1); seq <= 3; seq++ {
		ev := event("org_a1", seq, int(seq), "usr_a1", "member.put")
		ev.Details = nil
		want := key.Seal(head, &ev)
		do(t, s, store.Tx.AppendAudit, ev)
		if ev.Checkpoint == "" || ev.HeadCheckpoint == "" || ev.Checkpoint == ev.HeadCheckpoint {
			t.Fatalf("Seal gave checkpoints %q and %q", ev.Checkpoint, ev.HeadCheckpoint)
		}
		same(t, "head after append", get(t, s, store.Tx.AuditHead, "org_a1"), want)
		head = want
		sealed = append(sealed, ev)
	}
	chain := get(t, s, store.Tx.AuditChain, "org_a1")
	if len(chain) != 3 {
		t.Fatalf("chain holds %d events, want 3", len(chain))
	}
	for i, ev := range chain {
		same(t, "stored checkpoint", ev.Checkpoint, sealed[i].Checkpoint)
		same(t, "head checkpoint kept with the event", ev.HeadCheckpoint, "")
	}
	evs, _ := get2(t, s, store.AuditFilter{Org: "org_a1"})
	same(t, "listed checkpoint", evs[2].Checkpoint, sealed[2].Checkpoint)
	if v := key.Verify("org_a1", chain, get(t, s, store.Tx.AuditHead, "org_a1")); !v.Valid {
		t.Errorf("the stored chain does not verify with its key: %+v", v)
	}
}
