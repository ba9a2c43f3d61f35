package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	. "github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// noLeaks fails the test if it leaves goroutines behind. Register it first:
// cleanups run last-in first-out, so it runs after everything else is closed.
func noLeaks(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// process-wide workers started once by SpiceDB's dependencies
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/maypok86/otter/v2.(*Cache[...]).periodicCleanUp"),
		goleak.IgnoreTopFunction("cloud.google.com/go/spanner.(*endpointLatencyRegistry).runCleanup"),
	}
	t.Cleanup(func() {
		// closed transports and servers may take a moment to exit on a loaded machine:
		// goleak's own retries last well under a second, so retry up to 10 s
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			err := goleak.Find(opts...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Error(err)
				return
			}
		}
	})
}

// waitFor polls cond until it holds, failing after a bounded deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cluster is one SpiceDB server (memdb) with the diff schema, and the Trellis
// nodes in front of it.
type cluster struct {
	srv *Server
	key string
}

// newCluster starts SpiceDB and waits until its minimizeLatency reads are
// quantized (memdb reads at the head until its data is older than one window):
// a node that computed an answer at a revision older than the change it was
// told about would then cache a stale answer, and the tests would see it.
func newCluster(t *testing.T) *cluster {
	srv, key := startServer(t, 500*time.Millisecond)
	composed, err := schema.Compose(diffApp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	writer, reader := dial(t, srv, key), dial(t, srv, key)
	if _, err := writer.WriteSchema(ctx, composed.Text); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		marker := mkRel("document:quantized", "viewer", fmt.Sprintf("user:m%d", i))
		write(t, writer, OpTouch, marker)
		// a read that does not see a write just made (or even the schema): quantization is on
		if r, err := reader.Check(ctx, checkOf("document:quantized", "view", marker.Subject.Object.String())); err != nil || !r.Allowed() {
			break
		}
		if i == 200 {
			t.Fatal("minimizeLatency reads never lagged a write: the tests could not detect stale answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &cluster{srv: srv, key: key}
}

// node is one Trellis node: its own connection and check cache.
func (cl *cluster) node(t *testing.T, watch bool) (*Remote, *Cached) {
	t.Helper()
	r := dial(t, cl.srv, cl.key)
	c, err := NewCached(context.Background(), r, CacheConfig{MaxEntries: 5000, Watch: watch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return r, c
}

// seen waits until node c has applied n relationship updates from its watch.
func seen(t *testing.T, c *Cached, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d watched updates (have %d)", n, c.Stats().WatchUpdates), func() bool { return c.Stats().WatchUpdates >= n })
}

const twoTenantsUpdates = 8

// twoWatchingNodes starts a cluster with nodes A and B, both following Watch,
// writes the two-tenant fixture on A and waits until B has seen it.
func twoWatchingNodes(t *testing.T) (*cluster, *Cached, *Cached) {
	noLeaks(t)
	cl := newCluster(t)
	_, a := cl.node(t, true)
	_, b := cl.node(t, true)
	twoTenants(t, a)
	seen(t, b, twoTenantsUpdates)
	return cl, a, b
}

// TestWatchRevocationReachesOtherNode: node B caches an allow; node A deletes
// the granting relationship; once B's watch has delivered the delete, B denies.
func TestWatchRevocationReachesOtherNode(t *testing.T) {
	_, a, b := twoWatchingNodes(t)
	req := checkOf("document:a", "view", "user:alice")
	if r := mustCheck(t, b, req); r.Cached || !r.Allowed() {
		t.Fatalf("B's first check: %+v", r)
	}
	if r := mustCheck(t, b, req); !r.Cached || !r.Allowed() {
		t.Fatalf("B's repeat should be a cached allow: %+v", r)
	}
	write(t, a, OpDelete, mkRel("organization:ca", "member", "user:alice"))
	seen(t, b, twoTenantsUpdates+1)
	if r := mustCheck(t, b, req); r.Allowed() {
		t.Fatalf("B served an allow after A's revocation reached it: %+v", r)
	}
	if st := b.Stats(); st.WatchEvents < 2 || st.WatchRestarts != 0 {
		t.Errorf("B's watch: %+v", st)
	}
}

// TestWatchGrantReachesOtherNode: a cached denial on B ends when a grant made
// on A arrives.
func TestWatchGrantReachesOtherNode(t *testing.T) {
	_, a, b := twoWatchingNodes(t)
	req := checkOf("document:a", "view", "user:dave")
	mustCheck(t, b, req)
	if r := mustCheck(t, b, req); !r.Cached || r.Allowed() {
		t.Fatalf("setup: want a cached denial on B, got %+v", r)
	}
	write(t, a, OpTouch, mkRel("document:a", "viewer", "user:dave"))
	seen(t, b, twoTenantsUpdates+1)
	if r := mustCheck(t, b, req); !r.Allowed() {
		t.Fatalf("B kept denying after A's grant reached it: %+v", r)
	}
}

// TestWatchKeepsTenantIsolation: a change in tenant A seen on the watch evicts
// A's answers on B and leaves tenant B's cached.
func TestWatchKeepsTenantIsolation(t *testing.T) {
	_, a, b := twoWatchingNodes(t)
	inA, inB := checkOf("document:a", "view", "user:alice"), checkOf("document:b", "view", "user:bob")
	for i := 0; i < 2; i++ {
		mustCheck(t, b, inA)
		mustCheck(t, b, inB)
	}
	write(t, a, OpTouch, mkRel("organization:ca", "member", "user:carol"))
	seen(t, b, twoTenantsUpdates+1)
	if r := mustCheck(t, b, inB); !r.Cached || !r.Allowed() {
		t.Errorf("a change in tenant A evicted tenant B's answer on B: %+v", r)
	}
	if r := mustCheck(t, b, inA); r.Cached {
		t.Errorf("a change in tenant A left A's answer cached on B: %+v", r)
	}
}

// TestWatchSchemaChangeReachesOtherNode: a schema written on A invalidates B's
// answers.
func TestWatchSchemaChangeReachesOtherNode(t *testing.T) {
	_, a, b := twoWatchingNodes(t)
	req := checkOf("document:b", "view", "user:bob")
	mustCheck(t, b, req)
	if r := mustCheck(t, b, req); !r.Cached {
		t.Fatalf("setup: want a cached answer, got %+v", r)
	}
	events := b.Stats().WatchEvents
	composed, err := schema.Compose(diffApp + "\ndefinition extra_thing {\n\trelation owner: user\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteSchema(context.Background(), composed.Text); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the schema change on B", func() bool { return b.Stats().WatchEvents > events })
	if r := mustCheck(t, b, req); r.Cached || !r.Allowed() {
		t.Errorf("a schema change on A left B's answer cached: %+v", r)
	}
}

// TestWatchIsWhatKeepsNodesCoherent is the mutant: the same revocation, with a
// third node that does not watch. Once the watching node denies, the other
// still serves its stale cached allow: the tests above can fail.
func TestWatchIsWhatKeepsNodesCoherent(t *testing.T) {
	cl, a, b := twoWatchingNodes(t)
	nr, n := cl.node(t, false)
	if _, err := nr.CatchUp(context.Background()); err != nil { // read A's writes (not stale before the revocation)
		t.Fatal(err)
	}
	req := checkOf("document:a", "view", "user:alice")
	for _, c := range []*Cached{b, n} {
		mustCheck(t, c, req)
		if r := mustCheck(t, c, req); !r.Cached || !r.Allowed() {
			t.Fatalf("setup: want a cached allow, got %+v", r)
		}
	}
	write(t, a, OpDelete, mkRel("organization:ca", "member", "user:alice"))
	seen(t, b, twoTenantsUpdates+1)
	if r := mustCheck(t, b, req); r.Allowed() {
		t.Fatalf("the watching node allowed after the revocation: %+v", r)
	}
	if r := mustCheck(t, n, req); !r.Cached || !r.Allowed() {
		t.Fatalf("the node without a watch should still serve its stale cached allow (else this test proves nothing): %+v", r)
	}
}

// flakyWatcher is an embedded engine whose change stream breaks after its
// first change, then refuses to resume (a gap), then works.
type flakyWatcher struct {
	*Embedded
	mu      sync.Mutex
	cursors []string
}

var errStreamBroke = errors.New("test: the stream broke")

func (f *flakyWatcher) Watch(ctx context.Context, cursor string, fn func(WatchEvent) error) error {
	f.mu.Lock()
	call := len(f.cursors)
	f.cursors = append(f.cursors, cursor)
	f.mu.Unlock()
	switch call {
	case 0:
		return f.Embedded.Watch(ctx, cursor, func(ev WatchEvent) error {
			if err := fn(ev); err != nil {
				return err
			}
			if len(ev.Updates) > 0 {
				return errStreamBroke
			}
			return nil
		})
	case 1:
		return fmt.Errorf("%w: test: revision garbage-collected", ErrWatchGap)
	}
	return f.Embedded.Watch(ctx, cursor, fn)
}

func (f *flakyWatcher) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cursors...)
}

// TestWatchResumesAndResynchronizes: a broken stream resumes after the last
// change applied; a cursor that cannot resume bumps the global epoch (nothing
// cached before survives) and watching goes on from the head.
func TestWatchResumesAndResynchronizes(t *testing.T) {
	noLeaks(t)
	eng, first := startPair(t)
	first.Close()
	twoTenants(t, eng)
	f := &flakyWatcher{Embedded: eng}
	c, err := NewCached(context.Background(), f, CacheConfig{Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	inB := checkOf("document:b", "view", "user:bob")
	mustCheck(t, c, inB)
	if r := mustCheck(t, c, inB); !r.Cached {
		t.Fatalf("setup: want a cached answer, got %+v", r)
	}
	write(t, eng, OpTouch, mkRel("organization:ca", "member", "user:zoe")) // tenant A, directly to SpiceDB
	waitFor(t, "a resynchronization", func() bool { return c.Stats().WatchResyncs == 1 && len(f.calls()) >= 3 })
	calls := f.calls()
	if calls[1] == "" || calls[1] == calls[0] {
		t.Errorf("the stream did not resume after the change it applied: cursors %q", calls)
	}
	if calls[2] == "" {
		t.Errorf("after the gap the watch did not restart from the head: cursors %q", calls)
	}
	if st := c.Stats(); st.WatchUpdates != 1 || st.WatchRestarts < 2 {
		t.Errorf("stats after a break and a gap: %+v", st)
	}
	if r := mustCheck(t, c, inB); r.Cached {
		t.Errorf("an answer cached before the gap survived it: %+v", r)
	}
	// the restarted stream delivers later changes
	yan := checkOf("document:a", "view", "user:yan")
	mustCheck(t, c, yan)
	if r := mustCheck(t, c, yan); !r.Cached || r.Allowed() {
		t.Fatalf("setup: want a cached denial, got %+v", r)
	}
	write(t, eng, OpTouch, mkRel("document:a", "viewer", "user:yan"))
	seen(t, c, 2)
	if r := mustCheck(t, c, yan); !r.Allowed() {
		t.Errorf("a grant made directly to SpiceDB after the gap was hidden: %+v", r)
	}
}

// stalledWatcher is an embedded engine whose first stream breaks when told to,
// with a cursor that cannot resume, and which cannot catch up (resynchronize)
// until released.
type stalledWatcher struct {
	*Embedded
	breakNow, release chan struct{}
	mu                sync.Mutex
	watches, catchUps int
}

func (f *stalledWatcher) Watch(ctx context.Context, cursor string, fn func(WatchEvent) error) error {
	f.mu.Lock()
	f.watches++
	first := f.watches == 1
	f.mu.Unlock()
	if first {
		select {
		case <-f.breakNow:
			return fmt.Errorf("%w: test", ErrWatchGap)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.Embedded.Watch(ctx, cursor, fn)
}

func (f *stalledWatcher) CatchUp(ctx context.Context) (string, error) {
	f.mu.Lock()
	f.catchUps++
	first := f.catchUps == 1
	f.mu.Unlock()
	if !first {
		select {
		case <-f.release:
		default:
			return "", errors.New("test: SpiceDB is not answering")
		}
	}
	return f.Embedded.CatchUp(ctx)
}

func (f *stalledWatcher) counts() (watches, catchUps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches, f.catchUps
}

// TestWatchDownServesNoCachedAnswers: while the stream is down, changes made
// elsewhere are not arriving, so cached answers are not served (checks go to
// SpiceDB); once it is back, they are again.
func TestWatchDownServesNoCachedAnswers(t *testing.T) {
	noLeaks(t)
	eng, first := startPair(t)
	first.Close()
	twoTenants(t, eng)
	f := &stalledWatcher{Embedded: eng, breakNow: make(chan struct{}), release: make(chan struct{})}
	c, err := NewCached(context.Background(), f, CacheConfig{Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	req := checkOf("document:b", "view", "user:bob")
	mustCheck(t, c, req)
	if r := mustCheck(t, c, req); !r.Cached || !r.Allowed() {
		t.Fatalf("with the stream open: want a cached allow, got %+v", r)
	}
	close(f.breakNow)
	waitFor(t, "a failed resynchronization", func() bool { _, n := f.counts(); return n >= 2 })
	for i := 0; i < 3; i++ {
		if r := mustCheck(t, c, req); r.Cached || !r.Allowed() {
			t.Fatalf("with the stream down: %+v, want an uncached allow", r)
		}
	}
	close(f.release)
	waitFor(t, "the stream back", func() bool { w, _ := f.counts(); return w >= 2 && c.Stats().WatchResyncs == 1 })
	waitFor(t, "a cached answer again", func() bool { return mustCheck(t, c, req).Cached })
}

// TestWatchNeedsAWatcher: asking a cache over an engine that cannot stream
// changes to watch fails at construction.
func TestWatchNeedsAWatcher(t *testing.T) {
	eng, _ := startPair(t)
	var plain struct{ Engine }
	plain.Engine = eng
	if _, err := NewCached(context.Background(), plain, CacheConfig{Watch: true}); err == nil {
		t.Fatal("a cache over an engine without Watch started watching")
	}
}
