package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

const outboxSelect = `SELECT seq, action, updates, delete_filters, created_at, applied_at, revision FROM outbox `

func scanOutbox(r scanner) (store.OutboxEntry, error) {
	var (
		e                store.OutboxEntry
		updates, filters []byte
	)
	if err := r.Scan(&e.Seq, &e.Action, &updates, &filters, &e.CreatedAt, &e.AppliedAt, &e.Revision); err != nil {
		return store.OutboxEntry{}, err
	}
	var err error
	if e.Updates, err = decodeUpdates(updates); err != nil {
		return store.OutboxEntry{}, fmt.Errorf("outbox entry %d updates: %w", e.Seq, err)
	}
	if e.DeleteFilters, err = decodeFilters(filters); err != nil {
		return store.OutboxEntry{}, fmt.Errorf("outbox entry %d delete filters: %w", e.Seq, err)
	}
	return e, nil
}

// AppendOutbox stores e under the next value of the outbox's sequence (or the
// one PlanTail reserved). Writers hold the append lock from here, or from the
// reservation, until they commit (locks.go), so seqs grow in commit order; a
// rolled-back append or an unused reservation leaves a gap, which the relay
// never waits on.
func (t *tx) AppendOutbox(ctx context.Context, e store.OutboxEntry) (int64, error) {
	if err := t.usable("append outbox entry", true); err != nil {
		return 0, err
	}
	if err := t.lockTail(ctx); err != nil {
		return 0, err
	}
	updates, err := encodeUpdates(e.Updates)
	if err != nil {
		return 0, err
	}
	filters, err := encodeFilters(e.DeleteFilters)
	if err != nil {
		return 0, err
	}
	if seq := t.reserved; seq != 0 && t.tail {
		// reserved under the append lock (PlanTail): sent with COMMIT
		t.reserved = 0
		t.queue("append outbox entry",
			`INSERT INTO outbox (seq, action, updates, delete_filters, created_at, applied_at, revision)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			seq, e.Action, updates, filters, e.CreatedAt, e.AppliedAt, e.Revision)
		return seq, nil
	}
	seqs, err := all(ctx, t, "append outbox entry", func(r scanner) (int64, error) {
		var seq int64
		return seq, r.Scan(&seq)
	}, `INSERT INTO outbox (action, updates, delete_filters, created_at, applied_at, revision)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`,
		e.Action, updates, filters, e.CreatedAt, e.AppliedAt, e.Revision)
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

func (t *tx) PendingOutbox(ctx context.Context, n int) ([]store.OutboxEntry, error) {
	return all(ctx, t, "list pending outbox entries", scanOutbox,
		outboxSelect+`WHERE applied_at IS NULL ORDER BY seq LIMIT NULLIF($1::bigint, 0)`, limit(n))
}

func (t *tx) MarkApplied(ctx context.Context, seq int64, revision string, at time.Time) error {
	n, err := t.exec(ctx, "mark outbox entry applied",
		`UPDATE outbox SET applied_at = $2, revision = $3 WHERE seq = $1`, seq, at, revision)
	if err == nil && n == 0 {
		err = outboxNotFound(seq)
	}
	return err
}

func (t *tx) OutboxApplied(ctx context.Context, seq int64) (bool, error) {
	return one(ctx, t, "read outbox entry", func() error { return outboxNotFound(seq) }, func(r scanner) (bool, error) {
		var applied bool
		return applied, r.Scan(&applied)
	}, `SELECT applied_at IS NOT NULL FROM outbox WHERE seq = $1`, seq)
}

func outboxNotFound(seq int64) error {
	return fmt.Errorf("%w: outbox entry %d", trellis.ErrNotFound, seq)
}

// ---- JSON encoding of the engine's relationship updates and filters
//
// The engine's types carry no JSON tags and belong to another package, so the
// stored shape is pinned here, field by field: renaming a Go field must not
// change what is in the database.

type objectJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type subjectJSON struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Relation string `json:"relation,omitempty"`
}

type caveatJSON struct {
	Name    string         `json:"name"`
	Context map[string]any `json:"context"` // null and {} both survive
}

type updateJSON struct {
	Op        engine.Operation `json:"op"`
	Resource  objectJSON       `json:"resource"`
	Relation  string           `json:"relation"`
	Subject   subjectJSON      `json:"subject"`
	Caveat    *caveatJSON      `json:"caveat,omitempty"`
	ExpiresAt *time.Time       `json:"expiresAt,omitempty"`
}

type subjectFilterJSON struct {
	Type     string `json:"type"`
	ID       string `json:"id,omitempty"`
	Relation string `json:"relation,omitempty"`
}

type filterJSON struct {
	ResourceType string             `json:"resourceType"`
	ResourceID   string             `json:"resourceId,omitempty"`
	Relation     string             `json:"relation,omitempty"`
	Subject      *subjectFilterJSON `json:"subject,omitempty"`
}

// encodeUpdates returns the updates column; nil is NULL.
func encodeUpdates(us []engine.RelationshipUpdate) ([]byte, error) {
	if us == nil {
		return nil, nil
	}
	out := make([]updateJSON, len(us))
	for i, u := range us {
		r := u.Relationship
		j := updateJSON{
			Op:       u.Operation,
			Resource: objectJSON{Type: r.Resource.Type, ID: r.Resource.ID},
			Relation: r.Relation,
			Subject:  subjectJSON{Type: r.Subject.Object.Type, ID: r.Subject.Object.ID, Relation: r.Subject.Relation},
		}
		if r.Caveat != nil {
			j.Caveat = &caveatJSON{Name: r.Caveat.Name, Context: r.Caveat.Context}
		}
		if r.ExpiresAt != nil {
			at := r.ExpiresAt.UTC()
			j.ExpiresAt = &at
		}
		out[i] = j
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: encoding outbox updates: %w", err)
	}
	return b, nil
}

func decodeUpdates(b []byte) ([]engine.RelationshipUpdate, error) {
	if b == nil {
		return nil, nil
	}
	var in []updateJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	out := make([]engine.RelationshipUpdate, len(in))
	for i, j := range in {
		r := engine.Relationship{
			Resource: engine.ObjectRef{Type: j.Resource.Type, ID: j.Resource.ID},
			Relation: j.Relation,
			Subject: engine.SubjectRef{
				Object:   engine.ObjectRef{Type: j.Subject.Type, ID: j.Subject.ID},
				Relation: j.Subject.Relation,
			},
		}
		if j.Caveat != nil {
			r.Caveat = &engine.Caveat{Name: j.Caveat.Name, Context: j.Caveat.Context}
		}
		if j.ExpiresAt != nil {
			at := j.ExpiresAt.UTC()
			r.ExpiresAt = &at
		}
		out[i] = engine.RelationshipUpdate{Operation: j.Op, Relationship: r}
	}
	return out, nil
}

// encodeFilters returns the delete_filters column; nil is NULL.
func encodeFilters(fs []engine.RelationshipFilter) ([]byte, error) {
	if fs == nil {
		return nil, nil
	}
	out := make([]filterJSON, len(fs))
	for i, f := range fs {
		j := filterJSON{ResourceType: f.ResourceType, ResourceID: f.ResourceID, Relation: f.Relation}
		if f.Subject != nil {
			j.Subject = &subjectFilterJSON{Type: f.Subject.Type, ID: f.Subject.ID, Relation: f.Subject.Relation}
		}
		out[i] = j
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: encoding outbox delete filters: %w", err)
	}
	return b, nil
}

func decodeFilters(b []byte) ([]engine.RelationshipFilter, error) {
	if b == nil {
		return nil, nil
	}
	var in []filterJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	out := make([]engine.RelationshipFilter, len(in))
	for i, j := range in {
		f := engine.RelationshipFilter{ResourceType: j.ResourceType, ResourceID: j.ResourceID, Relation: j.Relation}
		if j.Subject != nil {
			f.Subject = &engine.SubjectFilter{Type: j.Subject.Type, ID: j.Subject.ID, Relation: j.Subject.Relation}
		}
		out[i] = f
	}
	return out, nil
}
