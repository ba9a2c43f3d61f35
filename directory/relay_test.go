package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// graphFake is an in-memory relationship set standing in for SpiceDB in relay
// unit tests (the HTTP tests run the relay against the real engine). It can be
// told to fail writes, as an unreachable engine does.
type graphFake struct {
	engine.Engine // unused methods panic
	mu            sync.Mutex
	rels          map[string]engine.Relationship
	writes        int
	batches       [][]engine.RelationshipUpdate // every applied write, in order
	down          bool
}

func newGraphFake() *graphFake { return &graphFake{rels: map[string]engine.Relationship{}} }

func (g *graphFake) WriteRelationships(_ context.Context, ups []engine.RelationshipUpdate) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		return "", trellis.ErrUnavailable
	}
	seen := map[string]bool{}
	for _, u := range ups {
		k := u.Relationship.String()
		if seen[k] {
			return "", trellis.Invalid("updates", "duplicate relationship %s in one write", k)
		}
		seen[k] = true
		if u.Operation == engine.OpDelete {
			delete(g.rels, k)
		} else {
			g.rels[k] = u.Relationship
		}
	}
	g.writes++
	g.batches = append(g.batches, append([]engine.RelationshipUpdate(nil), ups...))
	return "rev" + strconv.Itoa(g.writes), nil
}

func (g *graphFake) ReadRelationships(_ context.Context, req engine.ReadRequest) (engine.ReadPage, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := req.Filter
	var out []engine.Relationship
	for _, r := range g.rels {
		if r.Resource.Type != f.ResourceType || (f.ResourceID != "" && r.Resource.ID != f.ResourceID) {
			continue
		}
		if s := f.Subject; s != nil && (r.Subject.Object.Type != s.Type || (s.ID != "" && r.Subject.Object.ID != s.ID)) {
			continue
		}
		out = append(out, r)
	}
	return engine.ReadPage{Relationships: out}, nil
}

func (g *graphFake) ReadSchema(context.Context) (string, error) { return schema.SystemText, nil }

func (g *graphFake) keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for k := range g.rels {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func touch(res, relation, typ, id string) engine.RelationshipUpdate {
	rt, rid, _ := strings.Cut(res, ":")
	return engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel(engine.ObjectRef{Type: rt, ID: rid}, relation, subj(typ, id))}
}

func appendEntry(t *testing.T, st store.Store, e store.OutboxEntry) int64 {
	t.Helper()
	var seq int64
	if err := st.InTx(context.Background(), func(tx store.Tx) error {
		var err error
		seq, err = tx.AppendOutbox(context.Background(), e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return seq
}

func pending(t *testing.T, st store.Store) []store.OutboxEntry {
	t.Helper()
	var out []store.OutboxEntry
	if err := st.Read(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.PendingOutbox(context.Background(), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRelayAppliesInOrderAndMarksApplied(t *testing.T) {
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	// the second entry deletes what the first touched: order decides the outcome
	appendEntry(t, st, store.OutboxEntry{Action: "a", Updates: []engine.RelationshipUpdate{touch("organization:o1", "member", "user", "u1")}})
	del := touch("organization:o1", "member", "user", "u1")
	del.Operation = engine.OpDelete
	seq := appendEntry(t, st, store.OutboxEntry{Action: "b", Updates: []engine.RelationshipUpdate{del, touch("organization:o1", "admin", "user", "u2")}})
	if err := r.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if got := g.keys(); len(got) != 1 || got[0] != "organization:o1#admin@user:u2" {
		t.Fatalf("graph after relay = %v, want only the admin tuple", got)
	}
	if p := pending(t, st); len(p) != 0 {
		t.Fatalf("%d entries still pending", len(p))
	}
}

func TestRelayKeepsEntriesPendingWhileTheEngineIsDownAndResumes(t *testing.T) {
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	g.down = true
	seq := appendEntry(t, st, store.OutboxEntry{Action: "a", Updates: []engine.RelationshipUpdate{touch("organization:o1", "member", "user", "u1")}})
	err := r.WaitApplied(ctx, seq)
	if !errors.Is(err, trellis.ErrUnavailable) {
		t.Fatalf("WaitApplied with the engine down = %v, want ErrUnavailable", err)
	}
	if p := pending(t, st); len(p) != 1 {
		t.Fatalf("the committed entry must stay pending, got %d pending", len(p))
	}
	g.down = false
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.keys(); len(got) != 1 {
		t.Fatalf("graph after recovery = %v", got)
	}
	if p := pending(t, st); len(p) != 0 {
		t.Fatalf("%d entries still pending after recovery", len(p))
	}
}

func TestRelayReapplyingAnEntryIsHarmless(t *testing.T) {
	// a crash between the engine write and MarkApplied replays the entry
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	del := touch("organization:o1", "member", "user", "gone")
	del.Operation = engine.OpDelete
	e := store.OutboxEntry{Action: "a", Updates: []engine.RelationshipUpdate{touch("organization:o1", "member", "user", "u1"), del}}
	for range 2 {
		if _, err := r.apply(ctx, e); err != nil {
			t.Fatalf("re-applying the same entry failed: %v", err)
		}
	}
	if got := g.keys(); len(got) != 1 || got[0] != "organization:o1#member@user:u1" {
		t.Fatalf("graph after replay = %v", got)
	}
}

func TestRelayResolvesDeleteFiltersOverEveryDefinition(t *testing.T) {
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	seed := []engine.RelationshipUpdate{
		touch("organization:gone", "member", "user", "u1"),
		touch("organization:child", "parent", "organization", "gone"),
		touch("group:g1", "org", "organization", "gone"),
		touch("organization:kept", "member", "user", "u1"),
	}
	if _, err := g.WriteRelationships(ctx, seed); err != nil {
		t.Fatal(err)
	}
	seq := appendEntry(t, st, store.OutboxEntry{Action: "delete", DeleteFilters: []engine.RelationshipFilter{
		{ResourceType: "organization", ResourceID: "gone"},
		{Subject: &engine.SubjectFilter{Type: "organization", ID: "gone"}},
	}})
	if err := r.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if got := g.keys(); len(got) != 1 || got[0] != "organization:kept#member@user:u1" {
		t.Fatalf("graph after filter delete = %v, want only the unrelated tuple", got)
	}
}

func TestDedupeKeepsTheLastUpdateOfARelationship(t *testing.T) {
	a := touch("organization:o1", "member", "user", "u1")
	d := a
	d.Operation = engine.OpDelete
	out := dedupe([]engine.RelationshipUpdate{a, touch("organization:o1", "admin", "user", "u1"), d})
	if len(out) != 2 || out[1].Operation != engine.OpDelete || out[0].Relationship.Relation != "admin" {
		t.Fatalf("dedupe = %+v", out)
	}
}

// TestFinding12OutboxEntryAppliedInOneWrite is issue 13's finding 12 (outbox
// part): an entry of more than 1,000 updates was applied in several SpiceDB
// writes of 1,000, so a half-applied operation was briefly visible. Now an
// entry within engine.MaxAtomicUpdates, its delete filters resolved, is one write.
func TestFinding12OutboxEntryAppliedInOneWrite(t *testing.T) {
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	var seed []engine.RelationshipUpdate
	for i := range 800 {
		seed = append(seed, touch("group:old", "member", "user", fmt.Sprintf("o%d", i)))
	}
	if _, err := g.WriteRelationships(ctx, seed); err != nil {
		t.Fatal(err)
	}
	var grant []engine.RelationshipUpdate
	for i := range 1500 {
		grant = append(grant, touch("group:new", "member", "user", fmt.Sprintf("n%d", i)))
	}
	before := g.writes
	seq := appendEntry(t, st, store.OutboxEntry{Action: "group.replace", Updates: grant,
		DeleteFilters: []engine.RelationshipFilter{{ResourceType: "group", ResourceID: "old"}}})
	if err := r.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if n := g.writes - before; n != 1 {
		t.Fatalf("an entry of %d updates (800 resolved deletes, 1,500 touches) took %d writes, want 1", 2300, n)
	}
	if last := g.batches[len(g.batches)-1]; len(last) != 2300 {
		t.Fatalf("the write held %d updates, want 2300", len(last))
	}
	if got := len(g.keys()); got != 1500 {
		t.Fatalf("graph holds %d relationships, want the 1,500 new members", got)
	}
}

// TestRelayOrdersAnEntryBeyondOneWrite: an entry larger than one write (here
// the bound is lowered to 3 updates) is applied in writes ordered so that no
// intermediate state grants more than before or after: restricting touches
// first, then deletes of grants, then deletes of restrictions, then new grants.
func TestRelayOrdersAnEntryBeyondOneWrite(t *testing.T) {
	ctx := context.Background()
	st, g := memory.New(), newGraphFake()
	r := NewRelay(st, g, nil)
	r.maxUpdates = 3
	seed := []engine.RelationshipUpdate{
		touch("organization:gone", "suspended", "user", "*"),
		touch("organization:gone", "lineage", "organization", "root"),
		touch("organization:gone", "admin", "user", "a1"),
		touch("organization:gone", "admin", "user", "a2"),
		touch("organization:gone", "member", "user", "m1"),
		touch("organization:gone", "member", "user", "m2"),
	}
	if _, err := g.WriteRelationships(ctx, seed); err != nil {
		t.Fatal(err)
	}
	before := len(g.batches)
	seq := appendEntry(t, st, store.OutboxEntry{Action: "mixed",
		DeleteFilters: []engine.RelationshipFilter{{ResourceType: "organization", ResourceID: "gone"}},
		Updates: []engine.RelationshipUpdate{
			touch("organization:next", "member", "user", "m1"),
			touch("organization:next", "suspended", "user", "*"),
			touch("organization:next", "admin", "user", "a1"),
		}})
	if err := r.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
	restricting := map[string]bool{"suspended": true, "lineage": true}
	phase := func(u engine.RelationshipUpdate) int {
		res := restricting[u.Relationship.Relation]
		switch {
		case u.Operation != engine.OpDelete && res:
			return 0
		case u.Operation == engine.OpDelete && !res:
			return 1
		case u.Operation == engine.OpDelete:
			return 2
		}
		return 3
	}
	var order []string
	last := 0
	for _, b := range g.batches[before:] {
		if len(b) > 3 {
			t.Errorf("a write of %d updates, beyond the bound of 3", len(b))
		}
		for _, u := range b {
			if p := phase(u); p < last {
				t.Errorf("%s %s applied after a later phase", u.Operation, u.Relationship)
			} else {
				last = p
			}
			order = append(order, string(u.Operation)+" "+u.Relationship.String())
		}
	}
	if len(order) != 9 {
		t.Fatalf("applied %d updates, want 9: %v", len(order), order)
	}
	want := []string{"organization:next#admin@user:a1", "organization:next#member@user:m1", "organization:next#suspended@user:*"}
	if got := g.keys(); !slices.Equal(got, want) {
		t.Fatalf("graph after the entry = %v, want %v", got, want)
	}
	t.Logf("order: %v", order)
}
