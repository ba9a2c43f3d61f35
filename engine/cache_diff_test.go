package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

const diffApp = `
caveat level_at_least(level int, required int) {
	level >= required
}

definition folder {
	relation org: organization
	relation parent: folder
	relation viewer: user | group#member
	permission view = viewer + parent->view + org->access
}

definition document {
	relation org: organization
	relation folder: folder
	relation owner: user
	relation viewer: user | user:* | group#member | user with level_at_least | user with expiration
	relation banned: user
	permission edit = owner + org->manage
	permission view = ((edit + viewer + folder->view + org->access) - banned)
	permission audited = view & org->view_audit
}
`

// startPair starts embedded SpiceDB with the diff schema and a cache in front of it.
func startPair(t testing.TB) (*Embedded, *Cached) {
	t.Helper()
	ctx := context.Background()
	eng, err := StartEmbedded(ctx, EmbeddedConfig{RevisionQuantization: 5 * time.Second}) // SpiceDB's default window: expiry must not wait for it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	c, err := schema.Compose(diffApp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.WriteSchema(ctx, c.Text); err != nil {
		t.Fatal(err)
	}
	cached, err := NewCached(ctx, eng, CacheConfig{MaxEntries: 5000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cached.Close)
	return eng, cached
}

type world struct {
	r                         *rand.Rand
	orgs, users, groups, docs []string
	folders                   []string
}

func (w *world) pick(list []string) string { return list[w.r.IntN(len(list))] }

func mkRel(res, relation, sub string) Relationship {
	r, err := ParseObjectRef("r", res)
	if err != nil {
		panic(err)
	}
	s, err := ParseSubjectRef("s", sub)
	if err != nil {
		panic(err)
	}
	return Relationship{Resource: r, Relation: relation, Subject: s}
}

// randomUpdate draws one relationship write over the world.
func (w *world) randomUpdate() RelationshipUpdate {
	op := OpTouch
	if w.r.IntN(4) == 0 {
		op = OpDelete
	}
	var rel Relationship
	switch w.r.IntN(16) {
	case 0: // re-parent an org (moves subtrees between tenants), or change its lineage (which govern and suspension read); no self-parent
		a, b := w.pick(w.orgs), w.pick(w.orgs)
		if a <= b {
			return w.randomUpdate()
		}
		relation := "parent"
		if w.r.IntN(2) == 0 {
			relation = "lineage" // drawn alone: the cache must hold whatever the graph says, not only what the directory writes
		}
		rel = mkRel("organization:"+a, relation, "organization:"+b)
	case 1:
		rel = mkRel("organization:"+w.pick(w.orgs), "admin", "user:"+w.pick(w.users))
	case 2:
		rel = mkRel("organization:"+w.pick(w.orgs), "member", "user:"+w.pick(w.users))
	case 3:
		rel = mkRel("organization:"+w.pick(w.orgs), "member", "group:"+w.pick(w.groups)+"#member")
	case 4:
		rel = mkRel("group:"+w.pick(w.groups), "member", "user:"+w.pick(w.users))
	case 5:
		a, b := w.pick(w.groups), w.pick(w.groups)
		if a <= b { // nest in one direction only: no cycles
			return w.randomUpdate()
		}
		rel = mkRel("group:"+a, "member", "group:"+b+"#member")
	case 6:
		rel = mkRel("document:"+w.pick(w.docs), "org", "organization:"+w.pick(w.orgs))
	case 7:
		rel = mkRel("document:"+w.pick(w.docs), "viewer", "user:"+w.pick(w.users))
		switch w.r.IntN(4) {
		case 0:
			rel.Caveat = &Caveat{Name: "level_at_least", Context: map[string]any{"required": int64(w.r.IntN(5))}}
		case 1: // expirations far from now: the expiry timing itself is tested separately
			at := time.Now().Add(time.Duration(w.r.IntN(2)*2-1) * time.Hour)
			rel.ExpiresAt = &at
		}
	case 8:
		rel = mkRel("document:"+w.pick(w.docs), "viewer", "group:"+w.pick(w.groups)+"#member")
	case 9:
		rel = mkRel("document:"+w.pick(w.docs), "banned", "user:"+w.pick(w.users))
	case 10:
		a, b := w.pick(w.orgs), w.pick(w.orgs)
		if a >= b { // partner edges in one direction only: no cycles
			return w.randomUpdate()
		}
		rel = mkRel("organization:"+a, "admin", "organization:"+b+"#admin")
	case 11:
		rel = mkRel("organization:"+w.pick(w.orgs), "suspended", "user:*")
	case 12:
		rel = mkRel("document:"+w.pick(w.docs), "folder", "folder:"+w.pick(w.folders))
	case 13: // the platform every organization links to, shared by the tenants
		rel = mkRel("organization:"+w.pick(w.orgs), "platform", "platform:p")
	case 14:
		rel = mkRel("platform:p", "admin", "user:"+w.pick(w.users))
	default:
		if w.r.IntN(2) == 0 {
			rel = mkRel("folder:"+w.pick(w.folders), "org", "organization:"+w.pick(w.orgs))
		} else {
			a, b := w.pick(w.folders), w.pick(w.folders)
			if a <= b {
				return w.randomUpdate()
			}
			rel = mkRel("folder:"+a, "parent", "folder:"+b)
		}
	}
	return RelationshipUpdate{Operation: op, Relationship: rel}
}

func (w *world) randomCheck() CheckRequest {
	// checks draw from a hot subset so that many are answered from the cache
	perms := []string{"view", "edit", "audited"}
	req := CheckRequest{
		Resource:   ObjectRef{Type: "document", ID: w.pick(w.docs[:6])},
		Permission: perms[w.r.IntN(len(perms))],
		Subject:    SubjectRef{Object: ObjectRef{Type: "user", ID: w.pick(w.users[:6])}},
	}
	switch w.r.IntN(6) {
	case 0:
		req.Resource = ObjectRef{Type: "organization", ID: w.pick(w.orgs[:6])}
		req.Permission = []string{"manage", "access", "manage_members", "view_audit"}[w.r.IntN(4)]
	case 1:
		req.Resource = ObjectRef{Type: "folder", ID: w.pick(w.folders)}
		req.Permission = "view"
	}
	if w.r.IntN(3) == 0 {
		req.Context = map[string]any{"level": int64(w.r.IntN(5))}
	}
	return req
}

func seedFor(t *testing.T) uint64 {
	if s := os.Getenv("TRELLIS_DIFF_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// TestCacheDifferential: random org trees, groups, caveats, expirations, moves,
// suspensions and partner edges, with random interleavings of writes and checks
// (some concurrent). Every cached answer must equal an uncached, fully
// consistent SpiceDB check made right after it. Zero divergences.
func TestCacheDifferential(t *testing.T) {
	seed := seedFor(t)
	t.Logf("seed %d (rerun with TRELLIS_DIFF_SEED=%d)", seed, seed)
	eng, cached := startPair(t)
	runDifferential(t, seed, eng, cached, newWorld(seed), differentialOps(10000))
}

// TestCacheDifferentialAfterRestart: relationships stored before the cache
// existed (a restart, or writes made directly to SpiceDB) are learned at start,
// and answers stay exact.
func TestCacheDifferentialAfterRestart(t *testing.T) {
	seed := seedFor(t)
	t.Logf("seed %d (rerun with TRELLIS_DIFF_SEED=%d)", seed, seed)
	eng, first := startPair(t)
	first.Close()
	w := newWorld(seed)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		if _, err := eng.WriteRelationships(ctx, []RelationshipUpdate{w.randomUpdate()}); err != nil {
			t.Fatal(err)
		}
	}
	cached, err := NewCached(ctx, eng, CacheConfig{MaxEntries: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	runDifferential(t, seed, eng, cached, w, differentialOps(3000))
}

// differentialOps is n, or a quarter of it under the race detector.
func differentialOps(n int) int {
	if raceEnabled {
		return n / 4
	}
	return n
}

func newWorld(seed uint64) *world {
	w := &world{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := 0; i < 12; i++ {
		w.orgs = append(w.orgs, fmt.Sprintf("o%02d", i))
		w.users = append(w.users, fmt.Sprintf("u%d", i))
		w.docs = append(w.docs, fmt.Sprintf("d%d", i))
	}
	w.groups = []string{"g0", "g1", "g2", "g3"}
	w.folders = []string{"f0", "f1", "f2", "f3"}
	return w
}

func runDifferential(t *testing.T, seed uint64, eng *Embedded, cached *Cached, w *world, ops int) {
	ctx := context.Background()

	// background readers: concurrent checks racing the writes (answers not compared:
	// they exist to put entries into the cache concurrently with writes)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bgChecks atomic.Int64
	for g := 0; g < 1; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			bw := &world{r: rand.New(rand.NewPCG(seed+uint64(g)+1, 7)), orgs: w.orgs, users: w.users, docs: w.docs, groups: w.groups, folders: w.folders}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cached.Check(ctx, bw.randomCheck()); err != nil {
					t.Errorf("background check: %v", err)
					return
				}
				bgChecks.Add(1)
			}
		}(g)
	}

	divergences, compared := 0, 0
	for i := 0; i < ops && divergences < 5; i++ {
		if w.r.IntN(16) == 0 {
			n := 1 + w.r.IntN(3)
			updates := make([]RelationshipUpdate, 0, n)
			seen := map[string]bool{}
			for len(updates) < n {
				u := w.randomUpdate()
				if k := u.Relationship.String(); !seen[k] {
					seen[k] = true
					updates = append(updates, u)
				}
			}
			if _, err := cached.WriteRelationships(ctx, updates); err != nil {
				t.Fatalf("op %d: write %v: %v", i, updates, err)
			}
			continue
		}
		req := w.randomCheck()
		got, err := cached.Check(ctx, req)
		if err != nil {
			t.Fatalf("op %d: cached check: %v", i, err)
		}
		want := req
		want.Consistency = Consistency{Mode: FullyConsistent}
		ref, err := eng.Check(ctx, want)
		if err != nil {
			t.Fatalf("op %d: uncached check: %v", i, err)
		}
		compared++
		if got.Permissionship != ref.Permissionship {
			divergences++
			t.Errorf("op %d (seed %d): %s#%s@%s ctx=%v: cached=%v %s, SpiceDB %s",
				i, seed, req.Resource, req.Permission, req.Subject, req.Context, got.Cached, got.Permissionship, ref.Permissionship)
		}
	}
	close(stop)
	wg.Wait()
	st := cached.Stats()
	t.Logf("compared %d checks, %d divergences; %d background checks; hits %d misses %d bumps %d engine calls %d",
		compared, divergences, bgChecks.Load(), st.Hits, st.Misses, st.EpochBumps, st.EngineCalls)
	if st.Hits == 0 {
		t.Fatal("the cache never hit: the test would not detect stale answers")
	}
}
