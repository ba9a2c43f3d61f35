package directory

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
)

// Relay applies committed outbox entries to the engine, in Seq order, once
// each, whichever node committed them. The store hands the outbox to one
// applier at a time across every process that shares it (ClaimOutbox: on
// PostgreSQL a session advisory lock), and the holder marks each write's
// entries applied before it writes the next, so a crash re-applies at most the
// newest write, which is harmless: entries hold only TOUCH and DELETE (filters
// resolved to deletes) and nothing after them has been applied yet.
//
// Run is the background worker. A request goroutine that committed an entry
// calls WaitApplied, which wakes the worker and waits for the outcome of a
// pass that began after the commit, instead of applying the outbox itself.
// Without a running worker (tests, tools), WaitApplied makes the pass itself.
type Relay struct {
	store store.Store
	graph engine.Engine
	log   *slog.Logger

	kick chan struct{}

	mu      sync.Mutex
	asked   uint64        // passes asked for (WaitApplied); a pass covers every ask before it began
	covered uint64        // the newest ask covered by a pass that applied everything pending
	failed  uint64        // the newest ask covered by a pass that failed
	lastErr error         // that pass's error
	changed chan struct{} // closed when covered or failed moves
	workers int           // Run loops running

	// the largest write: an entry within both bounds is one SpiceDB write
	maxUpdates int
	maxBytes   int
	// batch is how many pending entries one pass reads at a time
	batch int
	// onApplied, when set (tests), is told of each write's entries once marked
	onApplied func(seqs []int64)
	// beforeWait, when set (tests), runs between an operation's commit and its
	// WaitApplied (another node's relay may apply the entry there)
	beforeWait func(seq int64)
	// mine: entries this process applied and no waiter has asked about yet
	mine map[int64]struct{}
}

// maxMine bounds Relay.mine (entries applied for writers of other nodes are
// never asked about); past it the set is forgotten, which only makes a waiter
// treat its entry as applied elsewhere (a harmless extra invalidation).
const maxMine = 1 << 16

// maxWriteBytes keeps one write under SpiceDB's 4 MiB gRPC message limit,
// with room for the message's own framing.
const maxWriteBytes = 3 << 20

// NewRelay builds a relay over st and graph.
func NewRelay(st store.Store, graph engine.Engine, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{store: st, graph: graph, log: log, kick: make(chan struct{}, 1), changed: make(chan struct{}),
		maxUpdates: engine.MaxAtomicUpdates, maxBytes: maxWriteBytes, batch: 500}
}

// Flush applies every entry pending when it begins (and those it finds
// committed meanwhile), holding the store's outbox claim. It
// stops at the first failure, leaving that entry and the ones after it
// pending for the next Flush.
//
// Consecutive entries without delete filters are applied together in one
// write (within the write bounds): one atomic write of several entries in Seq
// order ends in the same state as writing them one by one, and none of them
// is visible half-applied. An entry with filters starts a new write, since its
// filters are resolved against the graph once everything before it is applied.
func (r *Relay) Flush(ctx context.Context) error {
	return r.store.ClaimOutbox(ctx, func(c store.OutboxClaim) error {
		for {
			pending, err := c.PendingOutbox(ctx, r.batch)
			if err != nil {
				return err
			}
			if len(pending) == 0 {
				return nil
			}
			// a short read saw everything committed before it, so everything
			// committed before this Flush began: no read again to find it empty
			short := len(pending) < r.batch
			for len(pending) > 0 {
				n := r.group(pending)
				token, err := r.applyGroup(ctx, pending[:n])
				if err != nil {
					return fmt.Errorf("outbox entry %d (%s): %w", pending[0].Seq, pending[0].Action, err)
				}
				seqs := make([]int64, n)
				for i, e := range pending[:n] {
					seqs[i] = e.Seq
				}
				if lm, ok := c.(store.LaterMarker); ok && n == len(pending) {
					// the last write of this read: nothing is written to the
					// engine before the next read or the release, which carry
					// the mark (one round trip fewer)
					lm.MarkOutboxAppliedLater(seqs, token, time.Now().UTC())
				} else if err := c.MarkOutboxApplied(ctx, seqs, token, time.Now().UTC()); err != nil {
					return err
				}
				r.noteMine(seqs)
				if r.onApplied != nil {
					r.onApplied(seqs)
				}
				pending = pending[n:]
			}
			if short {
				return nil
			}
		}
	})
}

// group is how many entries from the start of pending go into one write: the
// first, then following entries without delete filters while the write stays
// within its bounds.
func (r *Relay) group(pending []store.OutboxEntry) int {
	if len(pending[0].DeleteFilters) > 0 {
		return 1 // its resolved deletes are unknown until it is applied alone
	}
	updates, bytes := 0, 0
	n := 0
	for _, e := range pending {
		if n > 0 && len(e.DeleteFilters) > 0 {
			break
		}
		size := 0
		for _, u := range e.Updates {
			size += updateSize(u)
		}
		if n > 0 && (updates+len(e.Updates) > r.maxUpdates || bytes+size > r.maxBytes) {
			break
		}
		updates, bytes, n = updates+len(e.Updates), bytes+size, n+1
	}
	return n
}

// applyGroup applies one entry, or several filterless entries as one write.
func (r *Relay) applyGroup(ctx context.Context, entries []store.OutboxEntry) (string, error) {
	if len(entries) == 1 {
		return r.apply(ctx, entries[0])
	}
	var updates []engine.RelationshipUpdate
	for _, e := range entries {
		updates = append(updates, e.Updates...)
	}
	updates = dedupe(updates)
	if len(updates) == 0 {
		return "", nil
	}
	return r.graph.WriteRelationships(ctx, updates)
}

// WaitApplied returns once entry seq (committed before the call) is applied.
// It wakes the worker and waits for a pass that began after this call; if
// that pass fails (the engine cannot take the entry now), the entry stays
// committed and pending (Run retries it) and the caller gets ErrUnavailable.
func (r *Relay) WaitApplied(ctx context.Context, seq int64) error {
	r.mu.Lock()
	r.asked++
	ask := r.asked
	r.mu.Unlock()
	r.Kick()
	for {
		r.mu.Lock()
		covered, failed, lastErr, changed, workers := r.covered, r.failed, r.lastErr, r.changed, r.workers
		r.mu.Unlock()
		switch {
		case covered >= ask:
			return nil
		case failed >= ask:
			return fmt.Errorf("%w: saved, not yet applied to the graph (outbox entry %d): %v", trellis.ErrUnavailable, seq, lastErr)
		case workers == 0: // no worker (or it stopped): make the pass here
			_ = r.pass(ctx)
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: saved, not yet applied to the graph (outbox entry %d): %v", trellis.ErrUnavailable, seq, ctx.Err())
		}
	}
}

// noteMine records entries this process applied.
func (r *Relay) noteMine(seqs []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mine == nil || len(r.mine) >= maxMine {
		r.mine = map[int64]struct{}{}
	}
	for _, s := range seqs {
		r.mine[s] = struct{}{}
	}
}

// appliedHere reports (once) whether this process applied entry seq: if not,
// another node's relay did, and this node's engine has not seen the write.
func (r *Relay) appliedHere(seq int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.mine[seq]
	delete(r.mine, seq)
	return ok
}

// pass flushes once and tells the waiters whose asks it covers.
func (r *Relay) pass(ctx context.Context) error {
	r.mu.Lock()
	ask := r.asked
	r.mu.Unlock()
	err := r.Flush(ctx)
	r.mu.Lock()
	if err == nil {
		r.covered = max(r.covered, ask)
	} else {
		r.failed, r.lastErr = max(r.failed, ask), err
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return err
}

// Kick asks Run to flush soon.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run is the relay's worker: it flushes at start (entries left by a crash),
// whenever a writer waits, and every interval (entries another node left
// pending when the engine was down), until ctx ends.
func (r *Relay) Run(ctx context.Context, interval time.Duration) {
	r.mu.Lock()
	r.workers++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.workers--
		close(r.changed) // waiters left without a worker make their own pass
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox relay", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// apply writes one entry: its filters resolved to deletes, then its updates.
// An entry within the engine's atomic bound (engine.MaxAtomicUpdates, and a
// request size SpiceDB accepts) is one write, so no half-applied operation is
// ever visible. A larger one (a deleted organization with very many
// relationships) is applied in several writes, ordered so that no
// intermediate state grants what neither the state before nor the state after
// grants: see inPhases. It returns the last write's token.
func (r *Relay) apply(ctx context.Context, e store.OutboxEntry) (string, error) {
	updates, err := r.expand(ctx, e.DeleteFilters, e.Updates)
	if err != nil {
		return "", err
	}
	if len(updates) == 0 {
		return "", nil
	}
	size := 0
	for _, u := range updates {
		size += updateSize(u)
	}
	if len(updates) <= r.maxUpdates && size <= r.maxBytes {
		return r.graph.WriteRelationships(ctx, updates)
	}
	text, err := r.graph.ReadSchema(ctx)
	if err != nil {
		return "", err
	}
	restricting, err := schema.Restricting(text)
	if err != nil {
		return "", err
	}
	phases := inPhases(updates, restricting)
	r.log.Warn("outbox entry exceeds one atomic write: applying it in ordered writes",
		"seq", e.Seq, "action", e.Action, "updates", len(updates), "bytes", size, "maxUpdates", r.maxUpdates)
	token := ""
	for _, phase := range phases {
		for len(phase) > 0 {
			n, bytes := 0, 0
			for n < len(phase) && n < r.maxUpdates && (n == 0 || bytes+updateSize(phase[n]) <= r.maxBytes) {
				bytes += updateSize(phase[n])
				n++
			}
			t, err := r.graph.WriteRelationships(ctx, phase[:n])
			if err != nil {
				return "", err
			}
			token, phase = t, phase[n:]
		}
	}
	return token, nil
}

// inPhases orders an entry too large for one write into four phases:
//  1. touches of restricting relations (a suspension, an exclusion: they can only deny),
//  2. deletes of the other relations (they can only take away),
//  3. deletes of restricting relations (all the grants being removed are gone by now),
//  4. touches of the other relations (they can only grant, up to the final state).
//
// Restricting relations are those an exclusion subtracts (schema.Restricting).
// While no relation both grants and restricts, every intermediate state grants
// at most what the state before or the state after grants. A relation that
// does both (organization#lineage: inherited administration and inherited
// suspension) is ordered as restricting, which keeps a suspension in force
// until the grants are gone, but is not a proof for it.
func inPhases(updates []engine.RelationshipUpdate, restricting map[string]bool) [4][]engine.RelationshipUpdate {
	var out [4][]engine.RelationshipUpdate
	for _, u := range updates {
		res := restricting[u.Relationship.Resource.Type+"#"+u.Relationship.Relation]
		i := 3
		switch {
		case u.Operation != engine.OpDelete && res:
			i = 0
		case u.Operation == engine.OpDelete && !res:
			i = 1
		case u.Operation == engine.OpDelete:
			i = 2
		}
		out[i] = append(out[i], u)
	}
	return out
}

// updateSize approximates an update's size on the wire, for the request size bound.
func updateSize(u engine.RelationshipUpdate) int {
	r := u.Relationship
	n := 64 + len(r.Resource.Type) + len(r.Resource.ID) + len(r.Relation) + len(r.Subject.Object.Type) + len(r.Subject.Object.ID) + len(r.Subject.Relation)
	if r.Caveat != nil {
		n += len(r.Caveat.Name) + 32*len(r.Caveat.Context)
		for k, v := range r.Caveat.Context {
			n += len(k) + len(fmt.Sprint(v))
		}
	}
	return n
}

// matching reads the relationships a filter selects; a filter without a
// resource type is expanded over every definition of the stored schema.
// expand is the write an outbox entry makes: the relationships its delete
// filters match, deleted, then its updates, one update per relationship.
func (r *Relay) expand(ctx context.Context, filters []engine.RelationshipFilter, upd []engine.RelationshipUpdate) ([]engine.RelationshipUpdate, error) {
	var updates []engine.RelationshipUpdate
	for _, f := range filters {
		found, err := r.matching(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, rel := range found {
			updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: rel})
		}
	}
	return dedupe(append(updates, upd...)), nil
}

func (r *Relay) matching(ctx context.Context, f engine.RelationshipFilter) ([]engine.Relationship, error) {
	types := []string{f.ResourceType}
	if f.ResourceType == "" {
		text, err := r.graph.ReadSchema(ctx)
		if err != nil {
			return nil, err
		}
		if types, err = schema.Definitions(text); err != nil {
			return nil, err
		}
	}
	var out []engine.Relationship
	for _, t := range types {
		g := f
		g.ResourceType = t
		found, err := engine.ReadAll(ctx, r.graph, g, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

// dedupe keeps the last update of each relationship in a batch: SpiceDB
// refuses a batch that names the same relationship twice.
func dedupe(in []engine.RelationshipUpdate) []engine.RelationshipUpdate {
	last := map[string]int{}
	for i, u := range in {
		last[u.Relationship.String()] = i
	}
	out := make([]engine.RelationshipUpdate, 0, len(last))
	for i, u := range in {
		if last[u.Relationship.String()] == i {
			out = append(out, u)
		}
	}
	return out
}
