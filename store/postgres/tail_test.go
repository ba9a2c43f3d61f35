package postgres_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis"
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
// appends an audit event and an outbox entry costs BEGIN with its locks (one
// batch), the append lock with the head (one batch), the event with the entry
// (one batch) and commit: four round trips, of which the serialized tail is
// three; an event on a second chain adds one (its head). Planned
// (store.TailPlanner), the heads and the entry's seq come with the append
// lock and COMMIT goes with the events and the entry: three, however many
// chains.
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
	var seqs []int64
	write := func(plan bool, chains ...string) int64 {
		before := counter.n.Load()
		err := s.InTx(ctx, func(tx store.Tx) error {
			if plan {
				tx.(store.TailPlanner).PlanTail(chains, true)
			}
			for _, org := range chains {
				if err := tx.AppendAudit(ctx, sealed(t, tx, org)); err != nil {
					return err
				}
			}
			seq, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
			seqs = append(seqs, seq)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return counter.n.Load() - before
	}
	write(false, "org_r") // the pool's connection and prepared statements are made once
	write(true, "org_r", "")
	if n := write(false, "org_r"); n != 4 {
		t.Errorf("a confined write with one audit event and an outbox entry took %d round trips, want 4", n)
	}
	if n := write(false, "org_r", ""); n != 5 {
		t.Errorf("a confined write with events on two chains and an outbox entry took %d round trips, want 5", n)
	}
	if n := write(true, "org_r"); n != 3 {
		t.Errorf("a planned confined write with one audit event and an outbox entry took %d round trips, want 3", n)
	}
	if n := write(true, "org_r", ""); n != 3 {
		t.Errorf("a planned confined write with events on two chains and an outbox entry took %d round trips, want 3", n)
	}
	// the entries are stored under the seqs returned, in commit order
	err = s.Read(t.Context(), func(tx store.Tx) error {
		pending, err := tx.PendingOutbox(t.Context(), 0)
		if err != nil {
			return err
		}
		var got []int64
		for _, e := range pending {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, seqs) || !slices.IsSorted(got) {
			t.Errorf("pending outbox seqs %v, returned %v", got, seqs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQueuedMembershipThatFailsCommitsNothing: PutMembership is sent with the
// transaction's next statement (here the planned tail). A membership the
// database refuses (a NUL byte in text) fails the transaction there: neither
// the event nor the outbox entry sent after it commits.
func TestQueuedMembershipThatFailsCommitsNothing(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	err := s.InTx(ctx, func(tx store.Tx) error {
		tx.(store.TailPlanner).PlanTail([]string{"org_m"}, true)
		if err := tx.PutMembership(ctx, store.Membership{Org: "org_m", User: "usr_m\x00", Roles: []string{"member"},
			Status: store.StatusActive, JoinedAt: at0, UpdatedAt: at0}); err != nil {
			return err
		}
		if _, err := tx.AuditHead(ctx, "org_m"); err != nil {
			return err // the membership's failure, reported with the head's round trip
		}
		t.Error("the head's round trip did not report the membership's failure")
		if err := tx.AppendAudit(ctx, sealed(t, tx, "org_m")); err != nil {
			return err
		}
		_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
		return err
	})
	if err == nil {
		t.Fatal("a transaction whose membership insert failed committed")
	}
	err = s.Read(ctx, func(tx store.Tx) error {
		head, err := tx.AuditHead(ctx, "org_m")
		if err != nil {
			return err
		}
		if head != (audit.Head{}) {
			t.Errorf("the chain's head moved to %+v", head)
		}
		pending, err := tx.PendingOutbox(ctx, 0)
		if len(pending) != 0 {
			t.Errorf("%d outbox entries committed", len(pending))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadAheadAnswersUntilTheFirstWrite: the rows store.ReadAhead names are
// read with BEGIN and the locks (one round trip) and answer the
// transaction's reads of them, missing rows included, as the database would;
// after the transaction's first write, reads go to the database and see it.
func TestReadAheadAnswersUntilTheFirstWrite(t *testing.T) {
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
	ctx := t.Context()
	org := store.Org{ID: "org_a", Slug: "a", Name: "A", Status: store.StatusActive, CreatedAt: at0, UpdatedAt: at0,
		Domains: []store.Domain{{Domain: "a.example", Token: "tok", Method: "dns"}}}
	user := store.User{ID: "usr_a", Email: "a@a.example", Name: "A", Status: store.StatusActive, CreatedAt: at0, UpdatedAt: at0}
	member := store.Membership{Org: "org_a", User: "usr_a", Roles: []string{"member", "admin"}, Status: store.StatusActive,
		JoinedAt: at0, AuthenticatedVia: "api", UpdatedAt: at0}
	group := store.Group{ID: "grp_a", Org: "org_a", Name: "G", CreatedAt: at0, UpdatedAt: at0}
	err = s.InTx(ctx, func(tx store.Tx) error {
		return errors.Join(tx.InsertOrg(ctx, org), tx.InsertUser(ctx, user), tx.PutMembership(ctx, member),
			tx.InsertGroup(ctx, group), tx.PutGroupMember(ctx, store.GroupMember{Group: "grp_a", Kind: "user", ID: "usr_a", AddedAt: at0}))
	})
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		org    store.Org
		user   store.User
		member store.Membership
		groups []store.GroupMember
	}
	err = s.Read(ctx, func(tx store.Tx) error {
		var err1, err2, err3, err4 error
		want.org, err1 = tx.GetOrg(ctx, "org_a")
		want.user, err2 = tx.GetUser(ctx, "usr_a")
		want.member, err3 = tx.GetMembership(ctx, "org_a", "usr_a")
		want.groups, err4 = tx.GroupsOf(ctx, "user", "usr_a")
		return errors.Join(err1, err2, err3, err4)
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func(ra store.ReadAhead, fn func(tx store.Tx) error) int64 {
		before := counter.n.Load()
		if err := s.InTx(store.WithReadAhead(store.WithTenants(ctx, "org_a"), ra), fn); err != nil {
			t.Fatal(err)
		}
		return counter.n.Load() - before
	}
	read(store.ReadAhead{Org: "org_a", User: "usr_a"}, func(store.Tx) error { return nil }) // statements prepared once
	n := read(store.ReadAhead{Org: "org_a", User: "usr_a"}, func(tx store.Tx) error {
		o, err := tx.GetOrg(ctx, "org_a")
		if err != nil {
			return err
		}
		u, err := tx.GetUser(ctx, "usr_a")
		if err != nil {
			return err
		}
		m, err := tx.GetMembership(ctx, "org_a", "usr_a")
		if err != nil {
			return err
		}
		g, err := tx.GroupsOf(ctx, "user", "usr_a")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(o, want.org) || !reflect.DeepEqual(u, want.user) || !reflect.DeepEqual(m, want.member) || !reflect.DeepEqual(g, want.groups) {
			t.Errorf("read ahead: %+v %+v %+v %+v, want %+v", o, u, m, g, want)
		}
		return nil
	})
	if n != 2 { // BEGIN, locks and reads; COMMIT
		t.Errorf("four reads named ahead took %d round trips with begin and commit, want 2", n)
	}
	// rows that do not exist are not found, as in the database
	read(store.ReadAhead{Org: "org_none", User: "usr_none"}, func(tx store.Tx) error {
		if _, err := tx.GetOrg(ctx, "org_none"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("GetOrg of a missing organization read ahead: %v, want not found", err)
		}
		if _, err := tx.GetMembership(ctx, "org_none", "usr_none"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("GetMembership of a missing membership read ahead: %v, want not found", err)
		}
		if g, err := tx.GroupsOf(ctx, "user", "usr_none"); err != nil || len(g) != 0 {
			t.Errorf("GroupsOf a user in none read ahead: %v, %v", g, err)
		}
		return nil
	})
	// after a write the transaction reads its own writes
	read(store.ReadAhead{Org: "org_a", User: "usr_a"}, func(tx store.Tx) error {
		m := want.member
		m.Roles = []string{"member"}
		if err := tx.PutMembership(ctx, m); err != nil {
			return err
		}
		got, err := tx.GetMembership(ctx, "org_a", "usr_a")
		if err != nil {
			return err
		}
		if !slices.Equal(got.Roles, m.Roles) {
			t.Errorf("a membership read after this transaction wrote it: roles %v, want %v", got.Roles, m.Roles)
		}
		return nil
	})
}

// TestRelayPassRoundTrips: a relay pass that finds entries costs two round
// trips: the claim's lock with the read of pending entries, and the mark
// made later with the unlock. The mark is durable once ClaimOutbox returns.
func TestRelayPassRoundTrips(t *testing.T) {
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
	ctx := t.Context()
	pass := func() ([]int64, int64) {
		before := counter.n.Load()
		var seqs []int64
		err := s.ClaimOutbox(ctx, func(c store.OutboxClaim) error {
			pending, err := c.PendingOutbox(ctx, 10)
			for _, e := range pending {
				seqs = append(seqs, e.Seq)
			}
			if len(seqs) > 0 {
				c.(store.LaterMarker).MarkOutboxAppliedLater(seqs, "rev", at0)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return seqs, counter.n.Load() - before
	}
	for range 2 {
		err := s.InTx(ctx, func(tx store.Tx) error {
			_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "test", CreatedAt: at0})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seqs, n := pass()
	if len(seqs) != 2 || n != 2 {
		t.Errorf("a pass over two entries read %v in %d round trips, want 2 entries in 2", seqs, n)
	}
	if seqs, _ := pass(); len(seqs) != 0 {
		t.Errorf("entries %v still pending after the pass that marked them", seqs)
	}
	err = s.Read(ctx, func(tx store.Tx) error {
		for _, seq := range seqs {
			if ok, err := tx.OutboxApplied(ctx, seq); err != nil || !ok {
				t.Errorf("entry %d applied: %v, %v", seq, ok, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
