package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

const eventSelect = `SELECT position, seq, at, actor, impersonator, action, target, organization, details, prev_hash, hash, checkpoint
	FROM audit_events `

// positioned is an event and its position in the global log.
type positioned struct {
	pos int64
	ev  audit.Event
}

func scanEvent(r scanner) (positioned, error) {
	var (
		p       positioned
		details []byte
	)
	ev := &p.ev
	err := r.Scan(&p.pos, &ev.Seq, &ev.At, &ev.Actor, &ev.Impersonator, &ev.Action, &ev.Target, &ev.Organization,
		&details, &ev.PrevHash, &ev.Hash, &ev.Checkpoint)
	if err != nil {
		return positioned{}, err
	}
	// no UseNumber: numbers come back float64, as audit.HashOf expects
	if err := unmarshalNullable(details, &ev.Details); err != nil {
		return positioned{}, fmt.Errorf("audit event %d details: %w", p.pos, err)
	}
	return p, nil
}

func events(rows []positioned) []audit.Event {
	out := make([]audit.Event, len(rows))
	for i, r := range rows {
		out[i] = r.ev
	}
	return out
}

func (t *tx) AuditHead(ctx context.Context, org string) (audit.Head, error) {
	if t.write && !t.done && t.err == nil {
		// a writer reads a head to extend its chain: from here to commit, in commit order
		if err := t.lockTail(ctx); err != nil {
			return audit.Head{}, err
		}
	}
	if h, ok := t.heads[org]; ok && t.tail {
		return h, nil // moved by this transaction, which holds the append lock: no other can
	}
	scan := func(r scanner) (audit.Head, error) {
		var h audit.Head
		err := r.Scan(&h.Seq, &h.Hash, &h.Checkpoint)
		return h, err
	}
	empty := func() error { return nil } // an empty chain has the zero head
	h, err := one(ctx, t, "get audit head", empty, scan, `SELECT seq, hash, checkpoint FROM audit_heads WHERE org = $1`, org)
	if err == nil && t.tail {
		if t.heads == nil {
			t.heads = map[string]audit.Head{}
		}
		t.heads[org] = h
	}
	return h, err
}

// AppendAudit checks ev.Seq against the head with a read, not a failing
// statement, so a refused append leaves the transaction usable, as in memory.
// Text fields are stored as encoding/json would, invalid UTF-8 bytes replaced,
// which is what audit.HashOf hashes.
func (t *tx) AppendAudit(ctx context.Context, ev audit.Event) error {
	if err := t.usable("append audit event", true); err != nil {
		return err
	}
	if err := t.lockTail(ctx); err != nil {
		return err
	}
	org := ev.Organization
	head, err := t.AuditHead(ctx, org)
	if err != nil {
		return err
	}
	// The head moves one step at a time; anything else means two writers
	// sealed against the same head, or a caller skipped sealing.
	if ev.Seq != head.Seq+1 {
		return conflict("audit chain %q is at seq %d; event has seq %d", org, head.Seq, ev.Seq)
	}
	details, err := marshalDetails(ev.Details)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "append audit event",
		`WITH event AS (
			INSERT INTO audit_events (org, seq, at, actor, impersonator, action, target, organization, details, prev_hash, hash, checkpoint)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $1, $8, $9, $10, $11)
		)
		INSERT INTO audit_heads (org, seq, hash, checkpoint) VALUES ($1, $2, $10, $12)
		ON CONFLICT (org) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, checkpoint = excluded.checkpoint`,
		org, ev.Seq, ev.At, validUTF8(ev.Actor), validUTF8(ev.Impersonator), validUTF8(ev.Action), validUTF8(ev.Target),
		details, ev.PrevHash, ev.Hash, ev.Checkpoint, ev.HeadCheckpoint)
	if err == nil {
		if t.heads == nil {
			t.heads = map[string]audit.Head{}
		}
		t.heads[org] = audit.Head{Seq: ev.Seq, Hash: ev.Hash, Checkpoint: ev.HeadCheckpoint}
	}
	return err
}

func (t *tx) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error) {
	rows, err := all(ctx, t, "list audit events", scanEvent, eventSelect+`
WHERE position > $1
	AND ($2::boolean OR organization = $3::text)
	AND ($4::timestamptz IS NULL OR at >= $4::timestamptz)
	AND ($5::timestamptz IS NULL OR at < $5::timestamptz)
	AND ($6::text = '' OR actor = $6::text)
	AND ($7::text = '' OR action = $7::text)
ORDER BY position
LIMIT NULLIF($8::bigint, 0)`,
		f.Cursor, f.AllOrgs, f.Org, f.Since, f.Until, f.Actor, f.Action, limit(f.Limit))
	if err != nil || len(rows) == 0 {
		return nil, 0, err
	}
	return events(rows), rows[len(rows)-1].pos, nil
}

func (t *tx) AuditChain(ctx context.Context, org string) ([]audit.Event, error) {
	rows, err := all(ctx, t, "read audit chain", scanEvent, eventSelect+`WHERE org = $1 ORDER BY position`, org)
	if err != nil {
		return nil, err
	}
	return events(rows), nil
}

// chainEvent finds the event of org's chain whose (possibly tampered) Seq is
// seq, as TamperAudit and DeleteAuditEvent address it.
func (t *tx) chainEvent(ctx context.Context, org string, seq int64) (int64, audit.Event, error) {
	p, err := one(ctx, t, "find audit event", func() error { return auditNotFound(org, seq) }, scanEvent,
		eventSelect+`WHERE org = $1 AND seq = $2 ORDER BY position LIMIT 1`, org, seq)
	return p.pos, p.ev, err
}

func auditNotFound(org string, seq int64) error {
	return fmt.Errorf("%w: audit event %d of organization %q", trellis.ErrNotFound, seq, org)
}

// marshalDetails encodes details for the jsonb column; nil is NULL.
func marshalDetails(details map[string]any) ([]byte, error) {
	if details == nil {
		return nil, nil
	}
	b, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: encoding audit details: %w", err)
	}
	return b, nil
}

// validUTF8 replaces each invalid UTF-8 byte of s with U+FFFD, as
// encoding/json does and as audit.HashOf hashes.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // ranging yields U+FFFD for each invalid byte
		b.WriteRune(r)
	}
	return b.String()
}
