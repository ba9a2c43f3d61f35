package engine

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/trellis-iam/trellis"
)

// CacheConfig bounds the check cache.
type CacheConfig struct {
	// MaxEntries caps the number of cached answers (all shards together).
	MaxEntries int
	// MaxBytes caps the approximate memory of cached answers.
	MaxBytes int64
	// TTL is a safety net: no answer is served older than this.
	TTL time.Duration
	// Registerer receives the cache metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Watch consumes the engine's change stream (SpiceDB's Watch API) and
	// invalidates on every change, whoever made it: other Trellis nodes, or
	// writes made directly to SpiceDB. The engine must implement Watcher.
	Watch bool
}

// Validate fills defaults.
func (c *CacheConfig) Validate() error {
	if c.MaxEntries <= 0 {
		c.MaxEntries = 1_000_000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 256 << 20
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Minute
	}
	return nil
}

// CacheStats are the cache's counters.
type CacheStats struct {
	Hits, Misses, Evictions, EpochBumps, EngineCalls uint64
	// With CacheConfig.Watch: changes applied from the stream (checkpoints
	// excluded), relationship updates among them, streams that broke, and
	// resynchronizations after a gap the stream could not resume over.
	WatchEvents, WatchUpdates, WatchRestarts, WatchResyncs uint64
}

type cacheEntry struct {
	res      CheckResult
	seq      uint64 // write sequence when the computation started
	at       int64  // unix nanos when stored
	deadline int64  // the earliest pending expiry when computed: not served at or after it
	size     int64
}

// Cached is the tenant-aware check cache, a decorator of an Engine. Keys carry
// what makes an answer true: schema version, resource, permission, subject,
// canonical caveat context and the tenancy stamp (tenant epoch, global epoch,
// and the write counter for objects Trellis cannot confine). Writes through it
// bump the epochs of the tenants they touch once SpiceDB has committed them.
type Cached struct {
	Engine
	cfg     CacheConfig
	entries *otter.Cache[string, cacheEntry] // W-TinyLFU, bounded by weight (ADR 0004)
	ten     *tenancy
	flight  singleflight.Group

	schemaVersion atomic.Uint64
	seq           atomic.Uint64 // writes applied through this cache
	tokensMu      sync.Mutex
	tokens        *simplelru.LRU[string, uint64] // write token -> seq

	hits, misses, evictions, bumps, calls atomic.Uint64
	metrics                               *cacheMetrics

	expiry *expiryScheduler
	now    func() time.Time
	watch  *cacheWatch // nil without CacheConfig.Watch
}

var _ Engine = (*Cached)(nil)

// NewCached wraps next with a check cache.
func NewCached(ctx context.Context, next Engine, cfg CacheConfig) (*Cached, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cached{Engine: next, cfg: cfg, ten: newTenancy(), now: time.Now}
	c.metrics = newCacheMetrics(cfg.Registerer)
	// every entry weighs at least MaxBytes/MaxEntries, so both bounds hold
	minWeight := max(1, cfg.MaxBytes/int64(cfg.MaxEntries))
	entries, err := otter.New(&otter.Options[string, cacheEntry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher: func(_ string, e cacheEntry) uint32 {
			return uint32(min(max(e.size, minWeight), math.MaxUint32))
		},
		OnDeletion: func(e otter.DeletionEvent[string, cacheEntry]) {
			if e.WasEvicted() {
				c.evictions.Add(1)
				c.metrics.evictions.Inc()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.entries = entries
	tokens, _ := simplelru.NewLRU[string, uint64](4096, nil)
	c.tokens = tokens
	c.expiry = newExpiryScheduler(c.expired)
	cursor := ""
	if cfg.Watch {
		if cursor, err = c.prepareWatch(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.learn(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.Watch {
		c.runWatch(cursor)
	}
	return c, nil
}

// learn builds the tenancy index from the relationships already stored (written
// before this process started, or directly to SpiceDB): first parents and
// anchors, then the cross-tenant dependencies, which need the anchors. Their
// pending expiries are scheduled as if they had been written here.
// It first records the types without relations (never traversed by a check).
func (c *Cached) learn(ctx context.Context) error {
	text, err := c.Engine.ReadSchema(ctx)
	if err != nil || text == "" {
		return err
	}
	defs, err := compileDefinitions(text)
	if err != nil {
		return err
	}
	terminal := map[string]bool{}
	for name, d := range defs {
		if len(d.Relation) == 0 {
			terminal[name] = true
		}
	}
	c.ten.setTypes(terminal, sealedTypes(defs))
	for pass := 0; pass < 2; pass++ {
		for typ := range defs {
			cursor := ""
			for {
				page, err := c.Engine.ReadRelationships(ctx, ReadRequest{
					Filter: RelationshipFilter{ResourceType: typ}, Consistency: Consistency{Mode: FullyConsistent},
					PageSize: 1000, Cursor: cursor,
				})
				if err != nil {
					return fmt.Errorf("engine: learn tenancy of %s: %w", typ, err)
				}
				c.ten.learn(page.Relationships, pass == 1)
				if pass == 0 {
					c.scheduleExpiries(page.Relationships)
				}
				if page.NextCursor == "" {
					break
				}
				cursor = page.NextCursor
			}
		}
	}
	return nil
}

// Close stops the watch, the expiry timers and the cache's maintenance goroutines.
func (c *Cached) Close() {
	c.stopWatch()
	c.expiry.stop()
	c.entries.StopAllGoroutines()
}

// Stats returns the cache counters.
func (c *Cached) Stats() CacheStats {
	st := CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(), EpochBumps: c.bumps.Load(), EngineCalls: c.calls.Load()}
	if w := c.watch; w != nil {
		st.WatchEvents, st.WatchUpdates, st.WatchRestarts, st.WatchResyncs = w.events.Load(), w.updates.Load(), w.restarts.Load(), w.resyncs.Load()
	}
	return st
}

func (c *Cached) key(req CheckRequest) (string, error) {
	st := c.ten.stampOf(req.Resource)
	var arr [160]byte // on the stack for the usual key: one allocation, the string
	b := strconv.AppendUint(arr[:0], c.schemaVersion.Load(), 36)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.global, 36)
	b = append(b, '|')
	b = append(b, st.tenant...)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.epoch, 36)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.writes, 36)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.object, 36)
	b = append(b, '|')
	b = append(b, req.Resource.Type...)
	b = append(b, ':')
	b = append(b, req.Resource.ID...)
	b = append(b, '#')
	b = append(b, req.Permission...)
	b = append(b, '@')
	b = append(b, req.Subject.Object.Type...)
	b = append(b, ':')
	b = append(b, req.Subject.Object.ID...)
	if req.Subject.Relation != "" {
		b = append(b, '#')
		b = append(b, req.Subject.Relation...)
	}
	if len(req.Context) > 0 {
		raw, err := json.Marshal(req.Context) // map keys are sorted: a canonical form
		if err != nil {
			return "", err
		}
		b = append(b, '|')
		b = append(b, raw...)
	}
	return string(b), nil
}

// requiredSeq returns the write sequence a read must reflect, and false when
// the request must bypass the cache (fully consistent, or a token this node did
// not issue).
func (c *Cached) requiredSeq(cons Consistency) (uint64, bool) {
	switch cons.Mode {
	case FullyConsistent:
		return 0, false
	case AtLeastAsFresh:
		c.tokensMu.Lock()
		seq, ok := c.tokens.Get(cons.Token)
		c.tokensMu.Unlock()
		return seq, ok
	}
	return 0, true
}

// reachability is implemented by engines that can tell, without a call,
// whether they can answer.
type reachability interface{ Reachable() bool }

func (c *Cached) lookup(key string, need uint64) (CheckResult, bool) {
	if r, ok := c.Engine.(reachability); ok && !r.Reachable() {
		return CheckResult{}, false // fail closed: never answer from the cache while the engine is gone
	}
	if !c.watchLive() {
		return CheckResult{}, false // changes made elsewhere are not arriving: ask SpiceDB
	}
	e, ok := c.entries.GetIfPresent(key)
	if !ok {
		return CheckResult{}, false
	}
	now := c.now().UnixNano()
	if e.seq < need || now >= e.deadline || now-e.at > int64(c.cfg.TTL) {
		return CheckResult{}, false
	}
	res := e.res
	res.Cached = true
	return res, true
}

func (c *Cached) store(key string, e cacheEntry) {
	e.size = int64(len(key)) + 160 + int64(len(e.res.CheckedAt))
	e.at = c.now().UnixNano()
	c.entries.Set(key, e)
}

// Check answers from the cache when it can, else asks the engine once per key
// (concurrent identical misses share one engine call).
func (c *Cached) Check(ctx context.Context, req CheckRequest) (CheckResult, error) {
	need, cacheable := c.requiredSeq(req.Consistency)
	if !cacheable {
		c.countEngineCall()
		return c.Engine.Check(ctx, req)
	}
	key, err := c.key(req)
	if err != nil {
		return c.Engine.Check(ctx, req)
	}
	if res, ok := c.lookup(key, need); ok {
		c.countHit()
		return res, nil
	}
	c.countMiss()
	v, err, _ := c.flight.Do(key, func() (any, error) {
		e := cacheEntry{seq: c.seq.Load(), deadline: c.expiry.next()}
		c.countEngineCall()
		res, err := c.Engine.Check(ctx, req)
		if err != nil {
			return nil, err
		}
		e.res = res
		c.store(key, e)
		return e, nil
	})
	if err != nil {
		return CheckResult{}, err
	}
	e := v.(cacheEntry)
	if e.seq < need { // joined a flight that started before the write the caller saw
		c.countEngineCall()
		return c.Engine.Check(ctx, req)
	}
	return e.res, nil
}

// CheckBulk serves each item from the cache when it can and sends the rest to
// the engine in one bulk call.
func (c *Cached) CheckBulk(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error) {
	out := make([]CheckResult, len(reqs))
	var missIdx []int
	var missReqs []CheckRequest
	var keys []string
	for i, r := range reqs {
		need, cacheable := c.requiredSeq(r.Consistency)
		key := ""
		if cacheable {
			var err error
			if key, err = c.key(r); err == nil {
				if res, ok := c.lookup(key, need); ok {
					c.countHit()
					out[i] = res
					continue
				}
			}
		}
		c.countMiss()
		missIdx, missReqs, keys = append(missIdx, i), append(missReqs, r), append(keys, key)
	}
	if len(missReqs) == 0 {
		return out, nil
	}
	e := cacheEntry{seq: c.seq.Load(), deadline: c.expiry.next()}
	c.countEngineCall()
	res, err := c.Engine.CheckBulk(ctx, missReqs)
	if err != nil {
		return nil, remapBulkField(err, missIdx)
	}
	for j, r := range res {
		out[missIdx[j]] = r
		if keys[j] != "" {
			e.res = r
			c.store(keys[j], e)
		}
	}
	return out, nil
}

// WriteRelationships writes through, then bumps the epochs of every tenant the
// updates touch, and schedules the expiry of expiring relationships.
func (c *Cached) WriteRelationships(ctx context.Context, updates []RelationshipUpdate) (string, error) {
	token, err := c.Engine.WriteRelationships(ctx, updates)
	if err != nil {
		// the write may or may not have been applied: invalidate as if it was
		c.afterWrite("", updates)
		return "", err
	}
	c.afterWrite(token, updates)
	return token, nil
}

func (c *Cached) afterWrite(token string, updates []RelationshipUpdate) {
	c.recordWrite(token)
	c.invalidate(updates)
}

// invalidate bumps the tenants that updates (written through this cache, or
// seen on the watch) touch, and schedules the expiry of expiring relationships.
func (c *Cached) invalidate(updates []RelationshipUpdate) {
	n, global := c.ten.applied(updates)
	c.countBumps(n, global)
	var rels []Relationship
	for _, u := range updates {
		if u.Operation != OpDelete && u.Relationship.ExpiresAt != nil {
			rels = append(rels, u.Relationship)
		}
	}
	c.scheduleExpiries(rels)
}

// scheduleExpiries schedules the expiries still ahead among rels (written
// through this cache, seen on the watch, or read from the engine).
func (c *Cached) scheduleExpiries(rels []Relationship) {
	now := c.now()
	var due []expiryItem
	for _, r := range rels {
		if r.ExpiresAt != nil && r.ExpiresAt.After(now) {
			due = append(due, expiryItem{at: *r.ExpiresAt, rel: r})
		}
	}
	c.expiry.schedule(due)
}

// recordWrite advances the write sequence and remembers which sequence a
// write token ("" for none) stands for, so atLeastAsFresh(token) can be served.
func (c *Cached) recordWrite(token string) {
	seq := c.seq.Add(1)
	if token == "" {
		return
	}
	c.tokensMu.Lock()
	c.tokens.Add(token, seq)
	c.tokensMu.Unlock()
}

func (c *Cached) countHit()        { c.hits.Add(1); c.metrics.hits.Inc() }
func (c *Cached) countMiss()       { c.misses.Add(1); c.metrics.misses.Inc() }
func (c *Cached) countEngineCall() { c.calls.Add(1); c.metrics.calls.Inc() }

func (c *Cached) countBumps(n int, global bool) {
	if global {
		n++
	}
	c.bumps.Add(uint64(n))
	c.metrics.bumps.Add(float64(n))
}

// WriteSchema writes through and invalidates every cached answer.
func (c *Cached) WriteSchema(ctx context.Context, text string) (string, error) {
	c.ten.unseal() // the new schema may reach a sealed type: until relearned, every write bumps its tenant
	token, err := c.Engine.WriteSchema(ctx, text)
	c.invalidateSchema()
	if err != nil {
		return "", err
	}
	c.recordWrite("") // the schema token is not recorded: atLeastAsFresh(it) bypasses the cache
	c.relearn(ctx)
	return token, nil
}

// SchemaChanged is told that another node changed the schema (the shared
// store has a newer version than this node wrote): every cached answer goes,
// and the tenancy index is learned again, as after WriteSchema.
func (c *Cached) SchemaChanged(ctx context.Context) {
	// reads from now on are at least as fresh as the new schema: without it a
	// minimizeLatency read at a quantized revision could predate the change
	// (400, no such definition) after an answer that saw it
	if w, ok := c.Engine.(Watcher); ok {
		_, _ = w.CatchUp(ctx) // on failure CatchUp reads at the head until a later revision settles it
	}
	c.ten.unseal()
	c.invalidateSchema()
	c.relearn(ctx)
}

// invalidateSchema invalidates every cached answer.
func (c *Cached) invalidateSchema() {
	c.schemaVersion.Add(1)
	c.ten.bumpAll()
	c.countBumps(0, true)
}

// relearn learns the tenancy index again after a schema change: a type that
// gains relations is no longer terminal, so edges into it written earlier must
// now carry dependencies.
func (c *Cached) relearn(ctx context.Context) {
	if err := c.learn(ctx); err != nil {
		c.ten.degrade() // cannot confine anything any more: every write invalidates every answer
	}
}

// expiryHeartbeat is deleted (a no-op) at each expiry so SpiceDB moves to a new
// revision: its dispatch cache can keep granting an expired relationship until
// the next write.
var expiryHeartbeat = RelationshipUpdate{Operation: OpDelete, Relationship: Relationship{
	Resource: ObjectRef{Type: "impersonation", ID: "trellis-expiry-heartbeat"}, Relation: "target",
	Subject: SubjectRef{Object: ObjectRef{Type: "user", ID: "trellis-expiry-heartbeat"}},
}}

// expired runs when relationships expire: a write moves SpiceDB past its
// cache, then the tenants that could see the relationships are bumped.
func (c *Cached) expired(rels []Relationship) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, err := c.Engine.WriteRelationships(ctx, []RelationshipUpdate{expiryHeartbeat})
	objs := make([]ObjectRef, 0, len(rels))
	for _, r := range rels {
		objs = append(objs, r.Resource)
	}
	if err != nil {
		token = ""
	}
	c.recordWrite(token)
	c.countBumps(c.ten.bumpObjects(objs...))
}

// expiryScheduler fires a callback when scheduled relationships expire and
// knows the earliest pending expiry (entries computed before it are not served
// at or after it).
type expiryScheduler struct {
	mu       sync.Mutex
	pending  expiryHeap
	known    map[string]bool // expiryItem.key of every pending item: each is scheduled once
	timer    *time.Timer
	earliest atomic.Int64
	fire     func([]Relationship)
	stopped  bool
	wg       sync.WaitGroup
}

type expiryItem struct {
	at  time.Time
	rel Relationship
}

// key names the relationship and its expiry: the same pair learned again (on
// a re-learn after a schema change or a watch resync, or written and then seen
// on the watch) is the same item.
func (it expiryItem) key() string {
	return strconv.FormatInt(it.at.UnixNano(), 36) + " " + it.rel.String()
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newExpiryScheduler(fire func([]Relationship)) *expiryScheduler {
	s := &expiryScheduler{fire: fire, known: map[string]bool{}}
	s.earliest.Store(math.MaxInt64)
	return s
}

func (s *expiryScheduler) next() int64 { return s.earliest.Load() }

// schedule adds the items not already pending, and moves the timer only when
// the earliest expiry changed.
func (s *expiryScheduler) schedule(items []expiryItem) {
	if len(items) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	earliest := s.earliest.Load()
	for _, it := range items {
		if k := it.key(); !s.known[k] {
			s.known[k] = true
			heap.Push(&s.pending, it)
		}
	}
	if s.pending[0].at.UnixNano() != earliest {
		s.rearm()
	}
}

// size is the number of pending expiries.
func (s *expiryScheduler) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// rearm points the timer at the earliest pending expiry. Caller holds mu.
func (s *expiryScheduler) rearm() {
	if s.timer != nil {
		s.timer.Stop()
	}
	if len(s.pending) == 0 {
		s.earliest.Store(math.MaxInt64)
		return
	}
	first := s.pending[0].at
	s.earliest.Store(first.UnixNano())
	// fire just after the instant, so the heartbeat revision is past the expiry
	s.timer = time.AfterFunc(time.Until(first)+time.Millisecond, s.run)
}

func (s *expiryScheduler) run() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	now := time.Now()
	var due []Relationship
	for len(s.pending) > 0 && !s.pending[0].at.After(now) {
		it := heap.Pop(&s.pending).(expiryItem)
		delete(s.known, it.key())
		due = append(due, it.rel)
	}
	s.mu.Unlock()
	if len(due) > 0 {
		s.fire(due)
	}
	s.mu.Lock()
	if !s.stopped {
		s.rearm()
	}
	s.mu.Unlock()
}

func (s *expiryScheduler) stop() {
	s.mu.Lock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

type cacheMetrics struct {
	hits, misses, evictions, bumps, calls    prometheus.Counter
	prewarmed                                prometheus.Counter
	watchEvents, watchRestarts, watchResyncs prometheus.Counter
	watchLive                                prometheus.Gauge
}

func newCacheMetrics(reg prometheus.Registerer) *cacheMetrics {
	mk := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trellis", Subsystem: "check_cache", Name: name, Help: help})
		if reg != nil {
			_ = reg.Register(c)
		}
		return c
	}
	live := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trellis", Subsystem: "check_cache", Name: "watch_live",
		Help: "1 while the SpiceDB Watch stream is open (cached answers are served only then, when watching)."})
	if reg != nil {
		_ = reg.Register(live)
	}
	return &cacheMetrics{
		hits:          mk("hits_total", "Checks answered from the cache."),
		misses:        mk("misses_total", "Checks not found in the cache."),
		evictions:     mk("evictions_total", "Entries evicted for space."),
		bumps:         mk("epoch_bumps_total", "Tenant (or global) epochs bumped by writes, expiries and schema changes."),
		calls:         mk("engine_calls_total", "Check calls that reached SpiceDB."),
		prewarmed:     mk("prewarmed_total", "Answers cached ahead of users' checks from a previous process's questions (--cache-warm-file)."),
		watchEvents:   mk("watch_events_total", "Changes applied from the SpiceDB Watch stream."),
		watchRestarts: mk("watch_restarts_total", "Watch streams that broke and were reopened."),
		watchResyncs:  mk("watch_resyncs_total", "Resynchronizations after the watch could not resume (global epoch bumped)."),
		watchLive:     live,
	}
}

// remapBulkField renames "items[j]" in a validation error of the miss batch to
// the caller's index.
func remapBulkField(err error, idx []int) error {
	var ve *trellis.ValidationError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "items[") {
		return err
	}
	end := strings.IndexByte(ve.Field, ']')
	j, perr := strconv.Atoi(ve.Field[len("items["):max(end, len("items["))])
	if end < 0 || perr != nil || j < 0 || j >= len(idx) {
		return err
	}
	return &trellis.ValidationError{Field: fmt.Sprintf("items[%d]", idx[j]) + ve.Field[end+1:], Message: ve.Message}
}

// ElsewhereWriter is implemented by engines that can be told of a write
// another process committed to SpiceDB (another node's outbox relay applied a
// directory write this node acknowledges).
type ElsewhereWriter interface {
	WrittenElsewhere(ctx context.Context, updates []RelationshipUpdate, filters []RelationshipFilter) error
}

var _ ElsewhereWriter = (*Cached)(nil)

// WrittenElsewhere makes this node's reads reflect a write already committed
// by another process, before its Watch delivers it: the engine's read floor
// catches up to SpiceDB's head (which is past the write), and the tenants the
// write touched are invalidated as if it had been written here. A delete by
// filter names its objects only when the filter names a resource id; one that
// does not invalidates every answer.
func (c *Cached) WrittenElsewhere(ctx context.Context, updates []RelationshipUpdate, filters []RelationshipFilter) error {
	if w, ok := c.Engine.(Watcher); ok {
		if _, err := w.CatchUp(ctx); err != nil {
			return err
		}
	}
	touched := slices.Clone(updates)
	for _, f := range filters {
		if f.ResourceID == "" {
			c.ten.bumpAll()
			c.countBumps(0, true)
			continue
		}
		touched = append(touched, RelationshipUpdate{Operation: OpDelete, Relationship: Relationship{
			Resource: ObjectRef{Type: f.ResourceType, ID: f.ResourceID}, Relation: f.Relation}})
	}
	c.afterWrite("", touched)
	return nil
}
