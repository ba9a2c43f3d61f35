package directory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/pgtest"
	"github.com/trellis-iam/trellis/store/postgres"
)

// startPostgres starts a throwaway PostgreSQL for t; without its binaries t
// is skipped, unless TRELLIS_REQUIRE_POSTGRES is set (CI), which fails it.
func startPostgres(t *testing.T) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.StartServer()
	if errors.Is(err, pgtest.ErrNotInstalled) {
		if os.Getenv("TRELLIS_REQUIRE_POSTGRES") != "" {
			t.Fatalf("TRELLIS_REQUIRE_POSTGRES is set: %v", err)
		}
		t.Skipf("%v; skipping %s", err, t.Name())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return srv
}

// nodesOnPostgres is what several nodes share: a migrated PostgreSQL
// database (its URL) and one engine with the system schema.
func nodesOnPostgres(t *testing.T) (string, *engine.Embedded) {
	t.Helper()
	ctx := t.Context()
	url := startPostgres(t).NewDatabase(t)
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return url, eng
}

// TestTwoNodesOnOneStoreApplyTheOutboxOnceInOrder runs two directory
// services, each with its own store pool and its own relay worker, on one
// PostgreSQL database and one engine, as two Trellis nodes are. Writers add
// and remove memberships through both at once; each writer owns its
// (organization, user) pairs, so the last acknowledged operation of each is
// known. Before the relays shared a claim on the outbox, each node applied the
// entries it read without a lock, and a stale re-applied add brought removed
// memberships back for good. Afterwards the graph must hold exactly the
// memberships whose last acknowledged operation was an add, and the directory
// must agree.
func TestTwoNodesOnOneStoreApplyTheOutboxOnceInOrder(t *testing.T) {
	ctx := t.Context()
	url, eng := nodesOnPostgres(t)
	// the second node writes to the engine later than the first
	graphs := [2]engine.Engine{eng, &laggingWrites{Engine: eng}}
	var nodes [2]*Service
	var appliedMu sync.Mutex
	applied := map[int64]int{} // outbox seq -> times applied, by either node
	runCtx, stop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	t.Cleanup(func() { stop(); workers.Wait() })
	for i := range nodes {
		st, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if nodes[i], err = New(Deps{Store: st, Graph: graphs[i]}, Config{}); err != nil {
			t.Fatal(err)
		}
		nodes[i].Relay().onApplied = func(seqs []int64) {
			appliedMu.Lock()
			defer appliedMu.Unlock()
			for _, seq := range seqs {
				applied[seq]++
			}
		}
		workers.Add(1)
		go func() { defer workers.Done(); nodes[i].Relay().Run(runCtx, time.Hour) }()
	}
	p := Provider("test")
	const orgs, users, writers, opsPerWriter = 2, 8, 8, 60
	var orgIDs, userIDs []string
	for i := range orgs {
		o, err := nodes[i%2].CreateOrganization(ctx, p, CreateOrg{Name: fmt.Sprintf("Org %d", i), Slug: fmt.Sprintf("org-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		orgIDs = append(orgIDs, o.ID)
	}
	for i := range users {
		u, err := nodes[i%2].CreateUser(ctx, p, CreateUser{Email: fmt.Sprintf("u%d@example.com", i), Name: "U"})
		if err != nil {
			t.Fatal(err)
		}
		userIDs = append(userIDs, u.ID)
	}
	type pair struct{ org, user string }
	// writer w owns the pairs whose index is w modulo writers
	var pairs []pair
	for _, o := range orgIDs {
		for _, u := range userIDs {
			pairs = append(pairs, pair{o, u})
		}
	}
	last := make([]map[pair]bool, writers) // pair -> last acknowledged op was an add
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		last[w] = map[pair]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 14))
			var mine []pair
			for i := w; i < len(pairs); i += writers {
				mine = append(mine, pairs[i])
			}
			for n := range opsPerWriter {
				pr := mine[rnd.IntN(len(mine))]
				node := nodes[rnd.IntN(2)]
				_ = n
				if last[w][pr] {
					if err := node.RemoveMember(ctx, p, pr.org, pr.user); err != nil {
						errs <- fmt.Errorf("remove %v: %w", pr, err)
						return
					}
					last[w][pr] = false
					continue
				}
				if _, _, err := node.PutMember(ctx, p, pr.org, pr.user, PutMember{Roles: []string{"member"}}); err != nil {
					errs <- fmt.Errorf("put %v: %w", pr, err)
					return
				}
				last[w][pr] = true
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// let both workers finish whatever they were doing: a flush through each
	// node's relay takes the claim after any pass in flight
	for _, n := range nodes {
		if err := n.Relay().Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	workers.Wait()
	want := map[pair]bool{}
	for _, m := range last {
		for pr, in := range m {
			if in {
				want[pr] = true
			}
		}
	}
	twice := 0
	for seq, n := range applied {
		if n != 1 {
			twice++
			t.Errorf("outbox entry %d was applied %d times", seq, n)
		}
	}
	resurrected, lost := 0, 0
	for _, o := range orgIDs {
		got, err := engine.ReadAll(ctx, eng, engine.RelationshipFilter{ResourceType: "organization", ResourceID: o, Relation: "member"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range got {
			have[r.Subject.Object.ID] = true
		}
		for _, u := range userIDs {
			pr := pair{o, u}
			switch {
			case have[u] && !want[pr]:
				resurrected++
				t.Errorf("organization:%s#member@user:%s is in the graph, but its last acknowledged operation removed it", o, u)
			case !have[u] && want[pr]:
				lost++
				t.Errorf("organization:%s#member@user:%s is missing from the graph, but its last acknowledged operation added it", o, u)
			}
			_, err := nodes[0].GetMember(ctx, p, o, u)
			if inDir := err == nil; inDir != want[pr] {
				t.Errorf("directory has membership %v = %v (err %v), want %v", pr, inDir, err, want[pr])
			}
		}
	}
	t.Logf("%d writers × %d operations through two nodes: %d entries, %d applied more than once; %d memberships held at the end, %d resurrected, %d lost",
		writers, opsPerWriter, len(applied), twice, len(want), resurrected, lost)
}

// laggingWrites delays each relationship write by up to 10 ms, as a node
// further from the engine or busier than the other is: it widens the window
// in which one node's relay may still be writing entries the other has
// already applied and built on. It is fault injection, not synchronisation.
type laggingWrites struct {
	engine.Engine
	seed uint64
	mu   sync.Mutex
	rnd  *rand.Rand
}

func (l *laggingWrites) WriteRelationships(ctx context.Context, ups []engine.RelationshipUpdate) (string, error) {
	l.mu.Lock()
	if l.rnd == nil {
		l.rnd = rand.New(rand.NewPCG(l.seed, 7))
	}
	d := time.Duration(l.rnd.IntN(10000)) * time.Microsecond
	l.mu.Unlock()
	time.Sleep(d)
	return l.Engine.WriteRelationships(ctx, ups)
}

// TestAWriteAnotherNodeAppliedIsReadOnTheWritingNode: node B commits a
// membership change and node A's relay applies it to SpiceDB before B's own
// pass runs. When B acknowledges the write, B's answers reflect it at once —
// its cache held the old answer, and it has no Watch — both for a grant and
// for a revocation.
func TestAWriteAnotherNodeAppliedIsReadOnTheWritingNode(t *testing.T) {
	ctx := t.Context()
	url, eng := nodesOnPostgres(t)
	var err error
	var caches [2]*engine.Cached
	var nodes [2]*Service
	for i := range nodes {
		if caches[i], err = engine.NewCached(ctx, eng, engine.CacheConfig{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(caches[i].Close)
		st, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if nodes[i], err = New(Deps{Store: st, Graph: caches[i]}, Config{}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := nodes[0], nodes[1]
	p := Provider("test")
	org, err := a.CreateOrganization(ctx, p, CreateOrg{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := a.CreateUser(ctx, p, CreateUser{Email: "dana@acme.example", Name: "Dana"})
	if err != nil {
		t.Fatal(err)
	}
	access := engine.CheckRequest{Resource: engine.ObjectRef{Type: "organization", ID: org.ID}, Permission: "access",
		Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: u.ID}}}
	answer := func() engine.CheckResult {
		t.Helper()
		res, err := caches[1].Check(ctx, access)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	answer()
	if res := answer(); !res.Cached || res.Allowed() {
		t.Fatalf("setup: node B should hold a cached denial, got %+v", res)
	}
	appliedByA := 0
	b.relay.beforeWait = func(int64) {
		if err := a.Relay().Flush(ctx); err != nil {
			t.Error(err)
		}
		appliedByA++
	}
	if _, _, err := b.PutMember(ctx, p, org.ID, u.ID, PutMember{Roles: []string{"member"}}); err != nil {
		t.Fatal(err)
	}
	if res := answer(); !res.Allowed() {
		t.Fatalf("node B acknowledged the membership, then answered %+v", res)
	}
	answer()
	if err := b.RemoveMember(ctx, p, org.ID, u.ID); err != nil {
		t.Fatal(err)
	}
	if res := answer(); res.Allowed() {
		t.Fatalf("node B acknowledged the removal, then still allowed: %+v", res)
	}
	if appliedByA != 2 {
		t.Fatalf("node A's relay ran %d times before B's waits, want 2", appliedByA)
	}
}
