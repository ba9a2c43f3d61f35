package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/trellis-iam/trellis/engine"
)

// TestPrewarmFromAPreviousCachesQuestions: a cache names the questions it
// holds current answers to; written out and read back, they pre-warm a new
// cache, whose answers are computed afresh (a change made between the two
// processes shows) and served as hits from the first check on.
func TestPrewarmFromAPreviousCachesQuestions(t *testing.T) {
	ctx := context.Background()
	eng, first := startPair(t)
	twoTenants(t, first)
	write(t, first, OpTouch,
		mkRel("document:a", "viewer", "user:carol|ext"),  // an id holding '|', as SpiceDB allows
		mkRel("document:b", "viewer", "group:g1#member"), // granted to a subject set
		mkRel("group:g1", "member", "user:dave"),         // (group is a system type: the schema has it)
		mkRel("document:a", "banned", "user:erin"),       // a deny
		mkRel("organization:ca", "member", "user:erin"),  // erin is a member, banned from a
		mkRel("document:b", "owner", "user:frank"),       // edit as well as view
		mkRel("document:b", "viewer", "user:gina"),       // the one revoked between the processes
	)
	levelled := checkOf("document:a", "view", "user:hal")
	write(t, first, OpTouch, mkRel("document:a", "viewer", "user:hal"))
	asked := []CheckRequest{
		checkOf("document:a", "view", "user:alice"),
		checkOf("document:a", "view", "user:bob"),
		checkOf("document:a", "view", "user:carol|ext"),
		checkOf("document:b", "view", "group:g1#member"),
		checkOf("document:b", "view", "user:dave"),
		checkOf("document:a", "view", "user:erin"),
		checkOf("document:b", "edit", "user:frank"),
		checkOf("document:b", "view", "user:gina"),
		checkOf("document:b", "view", "user:alice"),
	}
	levelled.Context = map[string]any{"level": 3.0, "note": "a|{b}"}
	asked = append(asked, levelled)
	for _, r := range asked {
		mustCheck(t, first, r)
	}
	hot := first.HotRequests(1000)
	if got, want := questionSet(hot), questionSet(asked); !maps.Equal(got, want) {
		t.Fatalf("hot questions:\n got %v\nwant %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if n := len(first.HotRequests(3)); n != 3 {
		t.Errorf("HotRequests(3) returned %d questions", n)
	}
	var file bytes.Buffer
	if err := WriteHotRequests(&file, hot); err != nil {
		t.Fatal(err)
	}
	read, err := ReadHotRequests(bytes.NewReader(file.Bytes()), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := questionSet(read), questionSet(hot); !maps.Equal(got, want) {
		t.Fatalf("read back %v, wrote %v", got, want)
	}
	if short, err := ReadHotRequests(bytes.NewReader(file.Bytes()), 4); err != nil || len(short) != 4 {
		t.Errorf("ReadHotRequests(max 4) = %d questions, %v", len(short), err)
	}

	// a write in tenant B makes B's answers stale: they are no longer hot
	write(t, first, OpDelete, mkRel("document:b", "viewer", "user:gina"))
	for _, r := range first.HotRequests(1000) {
		if r.Resource.ID == "b" {
			t.Errorf("a stale answer was named hot: %v", r)
		}
	}

	// the next process: answers computed now, served as hits from the start
	second, err := NewCached(ctx, eng, CacheConfig{MaxEntries: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	warmed, err := second.Prewarm(ctx, read, 2)
	if err != nil || warmed != len(read) {
		t.Fatalf("Prewarm = %d, %v; want %d", warmed, err, len(read))
	}
	if st := second.Stats(); st.Misses != 0 || st.Hits != 0 {
		t.Errorf("pre-warming counted as users' checks: %+v", st)
	}
	for _, r := range read {
		got := mustCheck(t, second, r)
		want, err := eng.Check(ctx, CheckRequest{Resource: r.Resource, Permission: r.Permission, Subject: r.Subject, Context: r.Context, Consistency: Consistency{Mode: FullyConsistent}})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Cached {
			t.Errorf("%v: not a hit after pre-warming", r)
		}
		if got.Permissionship != want.Permissionship {
			t.Errorf("%v: pre-warmed %v, the graph says %v", r, got.Permissionship, want.Permissionship)
		}
		if r.Subject.Object.ID == "gina" && got.Allowed() {
			t.Errorf("gina's revoked access came back through the pre-warm")
		}
	}
	if st := second.Stats(); st.Misses != 0 || st.Hits != uint64(len(read)) {
		t.Errorf("after pre-warming every check should hit: %+v", st)
	}
	// asking again what is cached costs no engine call
	calls := second.Stats().EngineCalls
	if n, err := second.Prewarm(ctx, read, 2); err != nil || n != 0 || second.Stats().EngineCalls != calls {
		t.Errorf("a second Prewarm asked the engine again: %d, %v", n, err)
	}
}

// gatedEngine records how many CheckBulk calls are in flight at once; each
// call waits (up to 200 ms, never failing for it) until want are in flight,
// so that the pre-warm's limit, not timing luck, decides the most seen.
type gatedEngine struct {
	Engine
	want          int
	mu            sync.Mutex
	inFlight, max int
	calls         int
}

func (g *gatedEngine) CheckBulk(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error) {
	g.mu.Lock()
	g.inFlight++
	g.calls++
	g.max = max(g.max, g.inFlight)
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.inFlight--; g.mu.Unlock() }()
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		enough := g.inFlight >= g.want
		g.mu.Unlock()
		if enough {
			break
		}
	}
	return g.Engine.CheckBulk(ctx, reqs)
}

// TestPrewarmKeepsItsCallsInFlightBounded: a pre-warm of more questions than
// one batch holds sends several bulk calls at once, never more than asked,
// and every answer it caches is the graph's.
func TestPrewarmKeepsItsCallsInFlightBounded(t *testing.T) {
	ctx := context.Background()
	eng, first := startPair(t)
	twoTenants(t, first)
	var reqs []CheckRequest
	for i := range 5 * PrewarmBatch {
		doc := []string{"document:a", "document:b"}[i%2]
		reqs = append(reqs, checkOf(doc, "view", fmt.Sprintf("user:u%d", i)))
	}
	reqs = append(reqs, checkOf("document:a", "view", "user:alice"), checkOf("document:b", "view", "user:alice"))
	for _, limit := range []int{1, 3} {
		gated := &gatedEngine{Engine: eng, want: limit}
		c, err := NewCached(ctx, gated, CacheConfig{MaxEntries: 5000})
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.Prewarm(ctx, reqs, limit)
		c.Close()
		if err != nil || n != len(reqs) {
			t.Fatalf("limit %d: Prewarm = %d, %v; want %d", limit, n, err, len(reqs))
		}
		if gated.max != limit || gated.calls != 6 {
			t.Errorf("limit %d: %d calls, at most %d in flight", limit, gated.calls, gated.max)
		}
	}
	c, err := NewCached(ctx, eng, CacheConfig{MaxEntries: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Prewarm(ctx, reqs, 4); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		got := mustCheck(t, c, r)
		want := r.Subject.Object.ID == "alice" && r.Resource.ID == "a"
		if !got.Cached || got.Allowed() != want {
			t.Errorf("%v: cached %v allowed %v, want a hit allowed %v", r, got.Cached, got.Allowed(), want)
		}
	}
}

func TestReadHotRequestsNamesTheBadLine(t *testing.T) {
	for _, body := range []string{
		`{"resource":"document:a","permission":"view","subject":"user:x"}` + "\n" + `{"resource":"document","permission":"view","subject":"user:x"}`,
		`{"resource":"document:a","permission":"view","subject":"user:x"}` + "\n" + `not json`,
		`{"resource":"document:a","permission":"","subject":"user:x"}` + "\n",
	} {
		if _, err := ReadHotRequests(strings.NewReader(body), 10); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: err = %v, want one naming the line", body, err)
		}
	}
}

func questionSet(reqs []CheckRequest) map[string]bool {
	out := map[string]bool{}
	for _, r := range reqs {
		k := r.Resource.String() + "#" + r.Permission + "@" + r.Subject.String()
		if len(r.Context) > 0 {
			keys := slices.Sorted(maps.Keys(r.Context))
			for _, key := range keys {
				k += "|" + key
			}
		}
		out[k] = true
	}
	return out
}
