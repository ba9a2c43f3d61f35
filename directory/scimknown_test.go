package directory

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/postgres"
)

// roundTrips counts a pool's round trips: a query, or a batch of them.
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

// TestSCIMBatchReadsAheadOnPostgres: a batch that reads ahead (Prefetch) and
// defers its rows costs the store the same round trips for 40 users as for
// 10, and answers as one that looks each row up: a name taken before the
// batch, or by an earlier step of it, is a conflict; a group's members are
// found members.
func TestSCIMBatchReadsAheadOnPostgres(t *testing.T) {
	ctx := t.Context()
	url, eng := nodesOnPostgres(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	counter := &roundTrips{}
	cfg.ConnConfig.Tracer = counter
	st, err := postgres.OpenConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s, err := New(Deps{Store: st, Graph: eng}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	prov := Provider("test")
	acme, err := s.CreateOrganization(ctx, prov, CreateOrg{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	user := func(name string) SCIMUserState {
		return SCIMUserState{UserName: name + "@acme.example", Active: true}
	}
	// provision runs the states as one batch that reads them ahead, and
	// returns each step's record and error and the batch's round trips
	provision := func(users []SCIMUserState, groups []SCIMGroupState) ([]SCIMRecord, []error, int64) {
		t.Helper()
		before := counter.n.Load()
		var recs []SCIMRecord
		var errs []error
		err := s.SCIMBatch(ctx, prov, acme.ID, func(b *SCIMBatch) error {
			recs, errs = nil, nil
			if err := b.Prefetch(users, groups); err != nil {
				return err
			}
			for _, u := range users {
				var rec SCIMRecord
				errs = append(errs, b.Step(func() (err error) { rec, _, err = b.PutUser("", u, AnyVersion); return err }))
				recs = append(recs, rec)
			}
			for _, g := range groups {
				var rec SCIMRecord
				errs = append(errs, b.Step(func() (err error) { rec, _, err = b.PutGroup("", g, AnyVersion); return err }))
				recs = append(recs, rec)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		return recs, errs, counter.n.Load() - before
	}
	many := func(prefix string, n int) []SCIMUserState {
		var out []SCIMUserState
		for i := range n {
			out = append(out, user(fmt.Sprintf("%s%d", prefix, i)))
		}
		return out
	}
	provision(many("warm", 2), nil) // the pool's connections and prepared statements
	_, errs, small := provision(many("a", 10), nil)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	_, errs, large := provision(many("b", 40), nil)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if large != small {
		t.Errorf("a batch of 40 users took %d round trips, one of 10 took %d: the steps should add none", large, small)
	}

	// taken before the batch (a0), taken by an earlier step (dup, twice)
	recs, errs, _ := provision([]SCIMUserState{user("a0"), user("dup"), user("dup"), user("cy")},
		[]SCIMGroupState{{DisplayName: "Staff"}})
	if !errors.Is(errs[0], trellis.ErrConflict) || errs[1] != nil || !errors.Is(errs[2], trellis.ErrConflict) || errs[3] != nil {
		t.Fatalf("steps: %v; want a0 and the second dup refused as conflicts", errs)
	}
	a0, found, err := s.SCIMByName(ctx, prov, acme.ID, store.SCIMUser, "a0@acme.example")
	if err != nil || !found {
		t.Fatalf("a0: %v %v", found, err)
	}
	members := []string{recs[1].ID, recs[3].ID, a0.ID}
	recs, errs, _ = provision([]SCIMUserState{user("dora")}, []SCIMGroupState{{DisplayName: "Staff"}, {DisplayName: "Team", Members: members}})
	if errs[0] != nil || !errors.Is(errs[1], trellis.ErrConflict) || errs[2] != nil {
		t.Fatalf("steps: %v; want the second Staff refused", errs)
	}
	team := recs[2]
	if team.Pending != "" {
		t.Errorf("Team's members pending: %q", team.Pending)
	}
	_ = st.Read(ctx, func(tx store.Tx) error {
		ms, err := tx.GroupMembers(ctx, team.ID)
		if err != nil || len(ms) != len(members) {
			t.Errorf("Team's members: %v, %v; want %v", ms, err, members)
		}
		return nil
	})
}
