package history

import (
	"context"
	"sort"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// farFuture replaces, in a replay, the expiry of a relationship still live at
// the time asked: the scratch engine judges expiry against its own clock, and
// the relationship must grant there as it did then.
var farFuture = time.Date(9999, time.January, 1, 0, 0, 0, 0, time.UTC)

// State folds changes (in order) into the relationships stored after them,
// judged at `at`: those expired by then are left out, the others kept with
// their caveats, their expiry moved past any clock (see farFuture). A baseline
// replaces what came before it.
func State(changes []store.RelationshipChange, at time.Time) *Snapshot {
	held, _ := fold(changes)
	s := &Snapshot{}
	for _, r := range held {
		if r.ExpiresAt != nil {
			if !r.ExpiresAt.After(at) {
				continue
			}
			later := farFuture
			r.ExpiresAt = &later
		}
		s.rels = append(s.rels, r)
	}
	sort.Slice(s.rels, func(i, j int) bool { return s.rels[i].String() < s.rels[j].String() })
	return s
}

// fold applies changes (in order) and returns the relationships they leave,
// keyed by their text, and the keys in the order each was first written (a
// key deleted and written again appears twice). A baseline replaces what came
// before it.
func fold(changes []store.RelationshipChange) (held map[string]engine.Relationship, order []string) {
	held = map[string]engine.Relationship{}
	for _, c := range changes {
		if c.Baseline {
			clear(held)
		}
		for _, u := range c.Updates {
			k := u.Relationship.String()
			if u.Operation == engine.OpDelete {
				delete(held, k)
				continue
			}
			if _, ok := held[k]; !ok {
				order = append(order, k)
			}
			held[k] = u.Relationship
		}
	}
	return held, order
}

// Snapshot is the graph's relationships at a past time; it reads like the
// engine (engine.RelationshipReader), so engine.ReadReachable walks it.
type Snapshot struct {
	rels []engine.Relationship
}

// Len is how many relationships it holds.
func (s *Snapshot) Len() int { return len(s.rels) }

// ReadRelationships returns every relationship f selects, in one page.
func (s *Snapshot) ReadRelationships(_ context.Context, req engine.ReadRequest) (engine.ReadPage, error) {
	f := req.Filter
	var out []engine.Relationship
	for _, r := range s.rels {
		switch {
		case r.Resource.Type != f.ResourceType,
			f.ResourceID != "" && r.Resource.ID != f.ResourceID,
			f.Relation != "" && r.Relation != f.Relation:
			continue
		}
		if sf := f.Subject; sf != nil {
			if r.Subject.Object.Type != sf.Type || (sf.ID != "" && r.Subject.Object.ID != sf.ID) || (sf.Relation != "" && r.Subject.Relation != sf.Relation) {
				continue
			}
		}
		out = append(out, r)
	}
	return engine.ReadPage{Relationships: out}, nil
}

// Replay loads into a scratch engine, under schemaText, what a check or
// subject lookup of root's permission depends on in the snapshot (a Snapshot
// or an Indexed one) (at most
// limit relationships: engine.ErrTooManyRelationships past it). It returns
// the scratch, how many relationships it loaded and stop, which releases it.
func Replay(ctx context.Context, s engine.RelationshipReader, schemaText string, root engine.SubjectRef, limit int) (*engine.SpiceDB, int, func(), error) {
	rels, err := engine.ReadReachable(ctx, s, schemaText, []engine.SubjectRef{root}, limit)
	if err != nil {
		return nil, 0, nil, err
	}
	scratch, stop, err := engine.NewScratch(ctx, schemaText, rels)
	if err != nil {
		return nil, 0, nil, err
	}
	return scratch, len(rels), stop, nil
}
