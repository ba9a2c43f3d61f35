package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/postgres"
)

// TestQueuedAuditInsertThatFailsCommitsNothing: AppendAudit's insert is sent
// with the transaction's next statement or before commit (tail.go). When it
// fails there (PostgreSQL refuses a NUL byte in text), the transaction
// commits nothing: not the event, not the head, not the outbox entry sent
// with it, nor the row written before it.
func TestQueuedAuditInsertThatFailsCommitsNothing(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bad := func(tx store.Tx) audit.Event {
		ev := sealed(t, tx, "org_q")
		ev.Target = "organization:org_q\x00"
		return ev
	}
	for _, withOutbox := range []bool{true, false} {
		err := s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.InsertOrg(ctx, store.Org{ID: "org_q", Slug: "q", Name: "Q", Status: store.StatusActive, CreatedAt: at0, UpdatedAt: at0}); err != nil {
				return err
			}
			if err := tx.AppendAudit(ctx, bad(tx)); err != nil {
				return err // refused at once: fine too, but nothing may commit
			}
			if withOutbox {
				_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
				if err == nil {
					t.Error("the outbox insert sent with a failing audit insert succeeded")
				}
				return err
			}
			return nil // the insert fails when InTx sends it before commit
		})
		if err == nil {
			t.Fatalf("withOutbox=%v: a transaction whose audit insert failed committed", withOutbox)
		}
		err = s.Read(ctx, func(tx store.Tx) error {
			if _, err := tx.GetOrg(ctx, "org_q"); err == nil {
				t.Errorf("withOutbox=%v: the organization written before the failed insert was committed", withOutbox)
			}
			head, err := tx.AuditHead(ctx, "org_q")
			if err != nil {
				return err
			}
			if head != (audit.Head{}) {
				t.Errorf("withOutbox=%v: the chain's head moved to %+v", withOutbox, head)
			}
			pending, err := tx.PendingOutbox(ctx, 0)
			if len(pending) != 0 {
				t.Errorf("withOutbox=%v: %d outbox entries committed", withOutbox, len(pending))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// and the store is usable: the same event without the NUL commits
	err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.AppendAudit(ctx, sealed(t, tx, "org_q")); err != nil {
			return err
		}
		_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// roundTrips counts the round trips of the connections it traces: a query,
// or a batch of queued statements, is one.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestConfinedWriteRoundTrips: a write transaction confined to a tenant that
// appends an audit event and an outbox entry costs begin, its locks (one
// batch), the append lock with the head (one batch), the event with the entry
// (one batch) and commit: five round trips, of which the serialized tail is
// three. An event on a second chain adds one (its head).
func TestConfinedWriteRoundTrips(t *testing.T) {
	url := needServer(t).NewDatabase(t)
	openMigrated(t, url) // migrates
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	counter := &roundTrips{}
	cfg.ConnConfig.Tracer = counter
	s, err := postgres.OpenConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := store.WithTenants(t.Context(), "org_r")
	write := func(chains ...string) int64 {
		before := counter.n.Load()
		err := s.InTx(ctx, func(tx store.Tx) error {
			for _, org := range chains {
				if err := tx.AppendAudit(ctx, sealed(t, tx, org)); err != nil {
					return err
				}
			}
			_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return counter.n.Load() - before
	}
	write("org_r") // the pool's connection and prepared statements are made once
	if n := write("org_r"); n != 5 {
		t.Errorf("a confined write with one audit event and an outbox entry took %d round trips, want 5", n)
	}
	if n := write("org_r", ""); n != 6 {
		t.Errorf("a confined write with events on two chains and an outbox entry took %d round trips, want 6", n)
	}
}
