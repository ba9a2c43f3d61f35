package directory

import (
	"context"
	"errors"
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
