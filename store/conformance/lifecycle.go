package conformance

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// RunTxLifecycle runs the tests of transactions that end badly: a panic,
// runtime.Goexit or an ended context inside InTx undoes every write and leaves
// a store that still takes writes, and a Tx kept past its closure writes
// nothing. newStore is as for Run.
func RunTxLifecycle(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"panic rolls back", testPanicInTxRollsBack},
		{"runtime.Goexit rolls back", testGoexitInTxRollsBack},
		{"context ending rolls back", testContextEndingDuringTxRollsBack},
		{"use after end", testTxUseAfterEnd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// checkRolledBack checks what the failed transactions below leave: org_a1 as seeded and
// nothing else, and a store that still takes writes (the lock was released).
func checkRolledBack(t *testing.T, s store.Store) {
	t.Helper()
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
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
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, Org("org_b2", "beta")) })
}

// failingWrites writes several rows, each valid; the caller then makes the transaction fail.
func failingWrites(t *testing.T, ctx context.Context, tx store.Tx) {
	t.Helper()
	_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "organization.create"})
	if err := errors.Join(
		tx.InsertOrg(ctx, Org("org_b2", "beta")),
		tx.UpdateOrg(ctx, Org("org_a1", "acme-renamed")),
		tx.AppendAudit(ctx, chainEvent("org_a1", 1, "usr_a1")),
		err,
	); err != nil {
		t.Errorf("writes before the failure: %v", err)
	}
}

// seedAcme stores org_a1, the one row checkRolledBack expects.
func seedAcme(t *testing.T, s store.Store) {
	t.Helper()
	MustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, Org("org_a1", "acme")) })
}

func testPanicInTxRollsBack(t *testing.T, s store.Store) {
	seedAcme(t, s)
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the closure's panic value", r)
			}
		}()
		_ = s.InTx(t.Context(), func(tx store.Tx) error {
			failingWrites(t, t.Context(), tx)
			panic(errBoom)
		})
		t.Error("InTx returned instead of re-panicking")
	}()
	checkRolledBack(t, s)
}

func testGoexitInTxRollsBack(t *testing.T, s store.Store) {
	// runtime.Goexit is what t.FailNow does inside a closure
	seedAcme(t, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.InTx(context.Background(), func(tx store.Tx) error {
			failingWrites(t, context.Background(), tx)
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	checkRolledBack(t, s)
}

func testContextEndingDuringTxRollsBack(t *testing.T, s store.Store) {
	seedAcme(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	err := s.InTx(ctx, func(tx store.Tx) error {
		failingWrites(t, ctx, tx)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("InTx whose context ended: %v", err)
	}
	checkRolledBack(t, s)
}

func testTxUseAfterEnd(t *testing.T, s store.Store) {
	var leaked store.Tx
	MustTx(t, s, func(_ context.Context, tx store.Tx) error { leaked = tx; return nil })
	if err := leaked.InsertOrg(t.Context(), Org("org_a1", "acme")); err == nil {
		t.Error("write through an ended transaction succeeded")
	}
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetOrg(ctx, "org_a1"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("org written through an ended transaction: %v", err)
		}
		return nil
	})
}

// RunSeqsFromOne checks what both stores promise beyond the contract's
// positive and increasing numbers: the first audit cursor and the first
// outbox seq are 1, and each counts up by one.
func RunSeqsFromOne(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	chainFixture(t, s)
	var cursors []int64
	f := store.AuditFilter{AllOrgs: true, Limit: 1}
	for range 4 {
		_, next := get2(t, s, f)
		cursors = append(cursors, next)
		f.Cursor = next
	}
	if fmt.Sprint(cursors) != "[1 2 3 4]" {
		t.Errorf("audit cursors %v, want [1 2 3 4]", cursors)
	}
	var seqs []int64
	for range 3 {
		MustTx(t, s, func(ctx context.Context, tx store.Tx) error {
			seq, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "a"})
			seqs = append(seqs, seq)
			return err
		})
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Errorf("outbox seqs %v, want [1 2 3]", seqs)
	}
}

// RunConcurrent runs writers and readers at once. Every transaction inserts
// one org, appends one audit event to a shared chain and one outbox entry;
// some then fail. Readers check that the three counts always agree, which
// holds only if transactions are atomic and reads see one snapshot; the chain
// and the outbox seqs must come out gap-free and unique, and the outbox in
// commit order. Run it with -race.
//
// newStores returns n handles on one empty store, as n Trellis nodes sharing
// it would have (a store kept in the process may return itself n times);
// writers and readers alternate between them, so whatever serializes
// transactions must work across handles, not only within one.
func RunConcurrent(t *testing.T, newStores func(t *testing.T, n int) []store.Store) {
	const writers, perWriter, readers, perReader = 8, 30, 4, 60
	stores := newStores(t, 2)
	s := stores[0]
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seqOf = map[int64]string{} // committed outbox seq -> its writer's org
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("org_w%d_%d", w, i)
				var seq int64
				err := stores[w%2].InTx(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					h, err := tx.AuditHead(ctx, "org_shared")
					if err != nil {
						return err
					}
					ev := chainEvent("org_shared", h.Seq+1, id)
					if err := errors.Join(tx.InsertOrg(ctx, Org(id, id)), tx.AppendAudit(ctx, ev)); err != nil {
						return err
					}
					if seq, err = tx.AppendOutbox(ctx, store.OutboxEntry{Action: id}); err != nil {
						return err
					}
					if i%3 == 2 {
						return errBoom
					}
					return nil
				})
				switch {
				case err == nil:
					mu.Lock()
					if other, dup := seqOf[seq]; dup {
						t.Errorf("outbox seq %d committed twice: %s and %s", seq, other, id)
					}
					seqOf[seq] = id
					mu.Unlock()
				case !errors.Is(err, errBoom):
					t.Errorf("writer %d: %v", w, err)
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for range perReader {
				err := stores[r%2].Read(t.Context(), func(tx store.Tx) error {
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
	MustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		orgs, _ := tx.ListOrgs(ctx, store.OrgFilter{})
		chain, _ := tx.AuditChain(ctx, "org_shared")
		pending, _ := tx.PendingOutbox(ctx, 0)
		if len(orgs) != want || len(chain) != want || len(pending) != want || len(seqOf) != want {
			t.Errorf("after the run: %d orgs, %d events, %d outbox entries, %d committed seqs; want %d of each",
				len(orgs), len(chain), len(pending), len(seqOf), want)
		}
		for i, ev := range chain {
			if ev.Seq != int64(i+1) {
				t.Fatalf("chain[%d].Seq = %d: the chain has a gap or a duplicate", i, ev.Seq)
			}
		}
		// the outbox is in commit order: entry i was written by the writer of event i
		for i, e := range pending {
			if i < len(chain) && e.Action != chain[i].Actor {
				t.Fatalf("outbox entry %d (seq %d) is %s's but event %d is %s's: seq order is not commit order",
					i, e.Seq, e.Action, i+1, chain[i].Actor)
			}
			if i > 0 && e.Seq <= pending[i-1].Seq {
				t.Fatalf("outbox seqs out of order: %d after %d", e.Seq, pending[i-1].Seq)
			}
		}
		return nil
	})
	t.Run("provider grants spent once", func(t *testing.T) { testProviderSpendOnce(t, newStores(t, 2)) })
}
