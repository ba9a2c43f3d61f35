package postgres

import (
	"bytes"
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// The tail of a write transaction (locks.go) runs under appendLock, which every
// writer of the database waits on, so its round trips bound the throughput of
// all writers together. It is kept to three:
//
//  1. appendLock and the first audit head, in one batch (AuditHead; a second
//     chain's head goes with the first chain's queued event);
//  2. the audit events and the outbox entry: AppendAudit checks the event
//     against the head this transaction read or moved under the lock (no
//     other writer can move it meanwhile) and queues its insert, which is sent
//     with the transaction's next statement (AppendOutbox's insert) or before
//     commit;
//  3. the commit.
//
// A queued statement that fails fails the transaction as any other does: the
// statement it was sent with reports it, and InTx does not commit. Row writes
// a caller deferred (store.DeferWrites: a SCIM request's users, memberships,
// groups and rows) are queued the same way, so a batch of them costs one
// round trip, sent with the next read, the savepoint's release or the tail.

// queuedStmt is a statement waiting for the transaction's next round trip.
type queuedStmt struct {
	op, sql string
	args    []any
}

// queue defers a write that returns nothing to the next round trip.
func (t *tx) queue(op, sql string, args ...any) {
	t.wrote = true
	t.queued = append(t.queued, queuedStmt{op: op, sql: sql, args: args})
}

// sendQueued sends the queued statements followed by sql (if not empty) in one
// batch and checks the queued statements' results; the caller reads sql's
// result from the returned batch and closes it.
func (t *tx) sendQueued(ctx context.Context, sql string, args ...any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	for _, q := range t.queued {
		b.Queue(q.sql, q.args...)
	}
	if sql != "" {
		b.Queue(sql, args...)
	}
	queued := t.queued
	t.queued = nil
	br := t.tx.SendBatch(ctx, b)
	for _, q := range queued {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, t.fail(q.op, err)
		}
	}
	return br, nil
}

// Flush sends what the transaction deferred (store.DeferWrites) and reports
// the first failure among it.
func (t *tx) Flush(ctx context.Context) error {
	if err := t.usable("send deferred writes", false); err != nil {
		return err
	}
	return t.flush(ctx)
}

// writeRow runs a row write that returns nothing but its error; under
// store.DeferWrites it is queued for the transaction's next round trip
// instead (its slices copied: the caller may reuse them meanwhile).
func (t *tx) writeRow(ctx context.Context, op, sql string, args ...any) error {
	if !store.WritesDeferred(ctx) {
		_, err := t.exec(ctx, op, sql, args...)
		return err
	}
	return t.queueRow(op, sql, args...)
}

// queueRow queues a row write for the transaction's next round trip, which
// reports its failure (its slices copied: the caller may reuse them meanwhile).
func (t *tx) queueRow(op, sql string, args ...any) error {
	if err := t.usable(op, true); err != nil {
		return err
	}
	for i, a := range args {
		switch v := a.(type) {
		case []string:
			args[i] = slices.Clone(v)
		case []byte:
			args[i] = bytes.Clone(v)
		}
	}
	t.queue(op, sql, args...)
	return nil
}

// flush sends what is queued (before commit, or before a statement that is
// not sent through exec or all).
func (t *tx) flush(ctx context.Context) error {
	if len(t.queued) == 0 {
		return nil
	}
	op := t.queued[0].op
	br, err := t.sendQueued(ctx, "")
	if err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return t.fail(op, err)
	}
	return nil
}

// tailPlan is what store.TailPlanner said the tail will append.
type tailPlan struct {
	chains []string
	outbox bool
}

// PlanTail lets the first audit head's round trip read every planned chain's
// head and reserve the outbox entry's seq (nextval under the append lock, so
// seqs still grow in commit order); AppendOutbox then queues its insert, and
// the events, the entry and COMMIT go in one round trip.
func (t *tx) PlanTail(chains []string, outbox bool) {
	t.plan = tailPlan{chains: chains, outbox: outbox}
}

// headUnderLock is the head of org's chain for a writer: read with appendLock
// taken in the same round trip the first time (with the other planned
// chains' heads and the reserved outbox seq), then as this transaction moved
// it.
func (t *tx) headUnderLock(ctx context.Context, org string) (audit.Head, error) {
	if h, ok := t.heads[org]; ok {
		return h, nil
	}
	const op = "get audit head"
	if err := t.usable(op, false); err != nil {
		return audit.Head{}, err
	}
	// what is queued (rows written, an earlier chain's event) goes in the same round trip
	b := &pgx.Batch{}
	for _, q := range t.queued {
		b.Queue(q.sql, q.args...)
	}
	queued := t.queued
	t.queued = nil
	locking := !t.tail
	if locking {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, appendLock)
	}
	chains := []string{org}
	for _, c := range t.plan.chains {
		if _, ok := t.heads[c]; !ok && !slices.Contains(chains, c) {
			chains = append(chains, c)
		}
	}
	for _, c := range chains {
		b.Queue(`SELECT seq, hash, checkpoint FROM audit_heads WHERE org = $1`, c)
	}
	reserve := t.plan.outbox && t.reserved == 0
	if reserve {
		b.Queue(`SELECT nextval('outbox_seq_seq')`)
	}
	br := t.tx.SendBatch(ctx, b)
	for _, q := range queued {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return audit.Head{}, t.fail(q.op, err)
		}
	}
	if locking {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return audit.Head{}, t.fail("take the append lock", err)
		}
		t.tail = true
	}
	heads := make([]audit.Head, len(chains))
	var err error
	for i := range chains {
		h := &heads[i]
		if err = br.QueryRow().Scan(&h.Seq, &h.Hash, &h.Checkpoint); err == pgx.ErrNoRows {
			err = nil // an empty chain has the zero head
		}
		if err != nil {
			break
		}
	}
	var seq int64
	if err == nil && reserve {
		err = br.QueryRow().Scan(&seq)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return audit.Head{}, t.fail(op, err)
	}
	if t.heads == nil {
		t.heads = map[string]audit.Head{}
	}
	for i, c := range chains {
		t.heads[c] = heads[i]
	}
	if reserve {
		t.reserved = seq
	}
	return heads[0], nil
}
