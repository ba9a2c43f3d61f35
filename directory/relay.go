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

// Relay applies committed outbox entries to the engine, in order. Entries hold
// only TOUCH and DELETE updates (and filters resolved to deletes), so applying
// one twice — after a crash between the engine write and MarkApplied — is
// harmless. One relay per store: a mutex keeps entries in sequence.
type Relay struct {
	store store.Store
	graph engine.Engine
	log   *slog.Logger

	mu   sync.Mutex // one applier at a time, so entries apply in Seq order
	kick chan struct{}

	// the largest write: an entry within both bounds is one SpiceDB write
	maxUpdates int
	maxBytes   int
}

// maxWriteBytes keeps one write under SpiceDB's 4 MiB gRPC message limit,
// with room for the message's own framing.
const maxWriteBytes = 3 << 20

// NewRelay builds a relay over st and graph.
func NewRelay(st store.Store, graph engine.Engine, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{store: st, graph: graph, log: log, kick: make(chan struct{}, 1), maxUpdates: engine.MaxAtomicUpdates, maxBytes: maxWriteBytes}
}

// Flush applies every pending entry. It stops at the first failure, leaving
// that entry and the ones after it pending for the next Flush.
func (r *Relay) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var pending []store.OutboxEntry
		if err := r.store.Read(ctx, func(tx store.Tx) error {
			var err error
			pending, err = tx.PendingOutbox(ctx, 100)
			return err
		}); err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		for _, e := range pending {
			token, err := r.apply(ctx, e)
			if err != nil {
				return fmt.Errorf("outbox entry %d (%s): %w", e.Seq, e.Action, err)
			}
			if err := r.store.InTx(ctx, func(tx store.Tx) error {
				return tx.MarkApplied(ctx, e.Seq, token, time.Now().UTC())
			}); err != nil {
				return err
			}
		}
	}
}

// WaitApplied flushes until entry seq is applied. If the engine cannot take it
// now, the entry stays committed and pending (Run retries it) and the caller
// gets ErrUnavailable.
func (r *Relay) WaitApplied(ctx context.Context, seq int64) error {
	if err := r.Flush(ctx); err != nil {
		r.Kick()
		return fmt.Errorf("%w: saved, not yet applied to the graph: %v", trellis.ErrUnavailable, err)
	}
	var done bool
	if err := r.store.Read(ctx, func(tx store.Tx) error {
		var err error
		done, err = tx.OutboxApplied(ctx, seq)
		return err
	}); err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("%w: outbox entry %d not applied", trellis.ErrUnavailable, seq)
	}
	return nil
}

// Kick asks Run to flush soon.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run flushes at start (entries left by a crash) and whenever kicked or every
// interval, until ctx ends.
func (r *Relay) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
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
	var updates []engine.RelationshipUpdate
	for _, f := range e.DeleteFilters {
		found, err := r.matching(ctx, f)
		if err != nil {
			return "", err
		}
		for _, rel := range found {
			updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: rel})
		}
	}
	updates = dedupe(append(updates, e.Updates...))
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
// does both (organization#parent: inherited administration and inherited
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
