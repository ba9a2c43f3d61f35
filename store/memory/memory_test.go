package memory_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/conformance"
	"github.com/trellis-iam/trellis/store/memory"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

var base = time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)

var errBoom = errors.New("boom")

func org(id, slug string) store.Org {
	return store.Org{ID: id, Slug: slug, Name: "Org " + slug, Status: store.StatusActive, CreatedAt: base, UpdatedAt: base}
}

func event(org string, seq int64, actor string) audit.Event {
	return audit.Event{
		Seq: seq, At: base.Add(time.Duration(seq) * time.Minute), Actor: actor, Action: "member.put",
		Organization: org, Details: map[string]any{"via": "api"},
		PrevHash: fmt.Sprintf("h-%s-%d", org, seq-1), Hash: fmt.Sprintf("h-%s-%d", org, seq),
	}
}

func mustTx(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func mustRead(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.Read(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func chainSeqs(t *testing.T, s store.Store, org string) []int64 {
	t.Helper()
	var out []int64
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		chain, err := tx.AuditChain(ctx, org)
		for _, ev := range chain {
			out = append(out, ev.Seq)
		}
		return err
	})
	return out
}

func head(t *testing.T, s store.Store, org string) audit.Head {
	t.Helper()
	var h audit.Head
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		h, err = tx.AuditHead(ctx, org)
		return err
	})
	return h
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) ([]audit.Event, int64) {
	t.Helper()
	var (
		evs  []audit.Event
		next int64
	)
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		evs, next, err = tx.ListAudit(ctx, f)
		return err
	})
	return evs, next
}

// chainFixture appends org_a1 seqs 1..3 with an org_b2 event in between.
func chainFixture(t *testing.T, s store.Store) {
	t.Helper()
	for _, ev := range []audit.Event{event("org_a1", 1, "usr_a1"), event("org_b2", 1, "usr_b2"), event("org_a1", 2, "usr_a1"), event("org_a1", 3, "usr_a1")} {
		mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendAudit(ctx, ev) })
	}
}

func TestSeqsAndCursorsCountFromOne(t *testing.T) {
	s := memory.New()
	chainFixture(t, s)
	var cursors []int64
	f := store.AuditFilter{AllOrgs: true, Limit: 1}
	for range 4 {
		_, next := listAudit(t, s, f)
		cursors = append(cursors, next)
		f.Cursor = next
	}
	if fmt.Sprint(cursors) != "[1 2 3 4]" {
		t.Errorf("audit cursors %v, want [1 2 3 4]", cursors)
	}
	var seqs []int64
	for range 3 {
		mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
			seq, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "a"})
			seqs = append(seqs, seq)
			return err
		})
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Errorf("outbox seqs %v, want [1 2 3]", seqs)
	}
}

func TestTamperAudit(t *testing.T) {
	s := memory.New()
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
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		chain, err = tx.AuditChain(ctx, "org_a1")
		return err
	})
	if len(chain) != 3 || chain[1].Actor != "usr_mallory" || chain[1].Details["via"] != "backdoor" || chain[1].Hash != "h-org_a1-2" {
		t.Errorf("chain after tampering: %+v", chain)
	}
	evs, _ := listAudit(t, s, store.AuditFilter{AllOrgs: true, Actor: "usr_mallory"})
	if len(evs) != 1 || evs[0].Seq != 2 || evs[0].Organization != "org_a1" || evs[0].Details["via"] != "backdoor" {
		t.Errorf("global log after tampering: %+v", evs)
	}
	if h := head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "h-org_a1-3"}) {
		t.Errorf("head moved: %+v", h)
	}
	noop := func(*audit.Event) {}
	if err := s.TamperAudit("org_a1", 9, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown seq: %v", err)
	}
	if err := s.TamperAudit("org_zz", 1, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown org: %v", err)
	}
}

func TestDeleteAuditEvent(t *testing.T) {
	s := memory.New()
	chainFixture(t, s)
	if err := s.DeleteAuditEvent("org_a1", 2); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 3]" {
		t.Errorf("chain after deleting seq 2: %s", got)
	}
	evs, _ := listAudit(t, s, store.AuditFilter{AllOrgs: true})
	var hashes []string
	for _, ev := range evs {
		hashes = append(hashes, ev.Hash)
	}
	if got := fmt.Sprint(hashes); got != "[h-org_a1-1 h-org_b2-1 h-org_a1-3]" {
		t.Errorf("global log after deleting seq 2: %s", got)
	}
	if err := s.DeleteAuditEvent("org_a1", 2); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("DeleteAuditEvent twice: %v", err)
	}

	// truncating the tail leaves the head ahead of the chain, for Verify to see
	if err := s.DeleteAuditEvent("org_a1", 3); err != nil {
		t.Fatal(err)
	}
	if h := head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "h-org_a1-3"}) {
		t.Errorf("head after truncation: %+v", h)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1]" {
		t.Errorf("chain after truncation: %s", got)
	}
	// appends still follow the head, not the damaged chain
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendAudit(ctx, event("org_a1", 4, "usr_a1")) })
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 4]" {
		t.Errorf("chain after a later append: %s", got)
	}
}

// checkRolledBack checks what the failed transactions below leave: org_a1 as seeded and
// nothing else, and a store that still takes writes (the lock was released).
func checkRolledBack(t *testing.T, s store.Store) {
	t.Helper()
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		if o, err := tx.GetOrg(ctx, "org_a1"); err != nil || o.Slug != "acme" {
			t.Errorf("org_a1 after rollback: %+v, %v", o, err)
		}
		if _, err := tx.GetOrgBySlug(ctx, "acme-renamed"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("renamed slug after rollback: %v", err)
		}
		if _, err := tx.GetOrg(ctx, "org_b2"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("org_b2 after rollback: %v", err)
		}
		if h, _ := tx.AuditHead(ctx, "org_a1"); h != (audit.Head{}) {
			t.Errorf("audit head after rollback: %+v", h)
		}
		if p, _ := tx.PendingOutbox(ctx, 0); len(p) != 0 {
			t.Errorf("outbox after rollback: %+v", p)
		}
		return nil
	})
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_b2", "beta")) })
}

// failingWrites writes several rows; the caller then makes the transaction fail.
func failingWrites(ctx context.Context, tx store.Tx) {
	renamed := org("org_a1", "acme-renamed")
	_ = tx.InsertOrg(ctx, org("org_b2", "beta"))
	_ = tx.UpdateOrg(ctx, renamed)
	_ = tx.AppendAudit(ctx, event("org_a1", 1, "usr_a1"))
	_, _ = tx.AppendOutbox(ctx, store.OutboxEntry{Action: "organization.create"})
}

func TestPanicInTxRollsBack(t *testing.T) {
	s := memory.New()
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the closure's panic value", r)
			}
		}()
		_ = s.InTx(t.Context(), func(tx store.Tx) error {
			failingWrites(t.Context(), tx)
			panic(errBoom)
		})
		t.Error("InTx returned instead of re-panicking")
	}()
	checkRolledBack(t, s)
}

func TestGoexitInTxRollsBack(t *testing.T) {
	// runtime.Goexit is what t.FailNow does inside a closure
	s := memory.New()
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.InTx(context.Background(), func(tx store.Tx) error {
			failingWrites(context.Background(), tx)
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	checkRolledBack(t, s)
}

func TestContextEndingDuringTxRollsBack(t *testing.T) {
	s := memory.New()
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	ctx, cancel := context.WithCancel(t.Context())
	err := s.InTx(ctx, func(tx store.Tx) error {
		failingWrites(ctx, tx)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("InTx whose context ended: %v", err)
	}
	checkRolledBack(t, s)
}

func TestTxUseAfterEnd(t *testing.T) {
	s := memory.New()
	var leaked store.Tx
	mustTx(t, s, func(_ context.Context, tx store.Tx) error { leaked = tx; return nil })
	if err := leaked.InsertOrg(t.Context(), org("org_a1", "acme")); err == nil {
		t.Error("write through an ended transaction succeeded")
	}
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetOrg(ctx, "org_a1"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("org written through an ended transaction: %v", err)
		}
		return nil
	})
}

// TestConcurrent runs writers and readers at once. Every transaction inserts
// one org, appends one audit event to a shared chain and one outbox entry;
// some then fail. Readers check that the three counts always agree, which
// holds only if transactions are atomic and isolated. Run with -race.
func TestConcurrent(t *testing.T) {
	const writers, perWriter, readers, perReader = 8, 30, 4, 60
	s := memory.New()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				err := s.InTx(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					h, err := tx.AuditHead(ctx, "org_shared")
					if err != nil {
						return err
					}
					id := fmt.Sprintf("org_w%d_%d", w, i)
					ev := event("org_shared", h.Seq+1, id)
					if err := errors.Join(tx.InsertOrg(ctx, org(id, id)), tx.AppendAudit(ctx, ev)); err != nil {
						return err
					}
					if _, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: id}); err != nil {
						return err
					}
					if i%3 == 2 {
						return errBoom
					}
					return nil
				})
				if err != nil && !errors.Is(err, errBoom) {
					t.Errorf("writer %d: %v", w, err)
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range perReader {
				err := s.Read(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					orgs, err1 := tx.ListOrgs(ctx, store.OrgFilter{})
					h, err2 := tx.AuditHead(ctx, "org_shared")
					pending, err3 := tx.PendingOutbox(ctx, 0)
					if err := errors.Join(err1, err2, err3); err != nil {
						return err
					}
					if int64(len(orgs)) != h.Seq || len(orgs) != len(pending) {
						t.Errorf("reader saw %d orgs, head %d, %d outbox entries", len(orgs), h.Seq, len(pending))
					}
					return nil
				})
				if err != nil {
					t.Errorf("reader: %v", err)
				}
			}
		})
	}
	wg.Wait()

	want := writers * (perWriter - perWriter/3)
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		orgs, _ := tx.ListOrgs(ctx, store.OrgFilter{})
		chain, _ := tx.AuditChain(ctx, "org_shared")
		if len(orgs) != want || len(chain) != want {
			t.Errorf("after the run: %d orgs, %d events; want %d of each", len(orgs), len(chain), want)
		}
		for i, ev := range chain {
			if ev.Seq != int64(i+1) {
				t.Fatalf("chain[%d].Seq = %d: the chain has a gap or a duplicate", i, ev.Seq)
			}
		}
		return nil
	})
}
