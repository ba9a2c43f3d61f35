package directory

import (
	"context"
	"errors"

	"github.com/trellis-iam/trellis/store"
)

// A SCIM /Bulk request (RFC 7644 §3.7) is one directory operation: its
// operations run in order inside one store transaction, each in a savepoint
// (a step), and commit together with one outbox entry, so the graph gets one
// write and the caller waits for it once. Each step's tuple updates are
// weighed by the effect layer as the step ends (with the operation's memos:
// what the principal holds is asked once per request); a step that fails, or
// whose effects the principal may not cause, is undone entirely — its rows,
// updates and audit events — and the batch goes on, as failOnErrors asks.
// run then weighs the whole operation's updates once more before commit, so
// nothing reaches the graph unweighed.
//
// The batch's rows go to the store deferred (store.DeferWrites): sent
// together with its next read, or at its end, rather than one round trip
// each, and what its steps look up is read ahead at once (Prefetch,
// scimknown.go). A deferred write that fails in the first attempt (a key the
// lookups did not see taken) fails it like a failed step: the second attempt
// sends each step's writes with its savepoint's release, so the failure is
// that step's alone.

// SCIMBatch is a running batch, valid only inside the fn given to SCIMBatch.
type SCIMBatch struct {
	s   *Service
	ctx context.Context
	tx  store.Tx
	o   *op
	org store.Org
	// action is the last write's, for the audit record of a refused step
	action string
	// savepoints: each step runs in a savepoint (the second attempt);
	// failed: a step failed in the first attempt, which had none
	savepoints, failed bool
}

// errStepFailed ends a first attempt in which a step failed.
var errStepFailed = errors.New("directory: a batch step failed; the batch runs again with savepoints")

// SCIMBatch runs fn as one provisioning operation on organization ref (the
// token's): what fn's steps keep commits together, with one outbox entry.
// An error fn returns undoes everything.
//
// Savepoints cost two statements a step, and many subtransactions in one
// PostgreSQL transaction slow every other session's snapshots (past 64 the
// server's subtransaction cache overflows), so fn runs first with none: when
// every step succeeds — the usual case — that attempt commits. When a step
// fails, the attempt is rolled back and fn runs again, each step in a
// savepoint, so the failed ones are undone and the rest kept. fn must
// therefore start afresh each time it is called.
func (s *Service) SCIMBatch(ctx context.Context, p Principal, ref string, fn func(b *SCIMBatch) error) error {
	err := s.scimBatch(ctx, p, ref, fn, false)
	if errors.Is(err, errStepFailed) {
		err = s.scimBatch(ctx, p, ref, fn, true)
	}
	return err
}

func (s *Service) scimBatch(ctx context.Context, p Principal, ref string, fn func(b *SCIMBatch) error, savepoints bool) error {
	ctx = store.DeferWrites(ctx)
	return s.run(ctx, p, "scim.bulk", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		o.scimOp(org.ID)
		b := &SCIMBatch{s: s, ctx: ctx, tx: tx, o: o, org: org, savepoints: savepoints}
		if err := fn(b); err != nil {
			return err
		}
		if !b.failed && !savepoints && tx.Flush(ctx) != nil {
			b.failed = true // a deferred write failed: which step's, the second attempt tells
		}
		if b.failed {
			return errStepFailed
		}
		return nil
	})
}

// Prefetch reads ahead, at once, what the batch's steps putting these users
// and groups will look up (call it before the steps; a state that names
// nothing valid is left out). It changes no outcome, only round trips.
func (b *SCIMBatch) Prefetch(users []SCIMUserState, groups []SCIMGroupState) error {
	return b.o.prefetch(b.ctx, b.tx, b.org.ID, users, groups)
}

// Step runs one operation of the batch. If fn fails, or what it changes is
// more than the principal may change (a refused escalation, recorded on the
// organization's audit chain as <action>.denied), every write fn made is
// undone and the error returned; the batch may go on, unless the error is the
// service's own (the store or engine unavailable): then fn of SCIMBatch must
// return it, and nothing commits.
func (b *SCIMBatch) Step(fn func() error) error {
	if b.failed {
		return errStepFailed // the first attempt is over: the second runs every step
	}
	o := b.o
	nu, ne, nf := len(o.updates), len(o.events), len(o.filters)
	b.action = "scim.bulk"
	step := func() error {
		if err := fn(); err != nil {
			return err
		}
		return b.s.weighEffects(b.ctx, b.tx, o, o.filters[nf:], o.updates[nu:])
	}
	if !b.savepoints {
		err := step()
		if err != nil {
			b.failed = true
		}
		return err
	}
	err := b.tx.Savepoint(b.ctx, step)
	if err == nil {
		return nil
	}
	o.updates, o.events, o.filters = o.updates[:nu], o.events[:ne], o.filters[:nf]
	var esc *escalation
	if errors.As(err, &esc) {
		o.record(esc.org, b.action+".denied", "organization:"+esc.org,
			map[string]any{"permission": esc.perm, "field": b.action, "reason": "escalation"})
	}
	return err
}

// Get reads a provisioned resource of the batch's organization, as the
// batch's earlier steps left it.
func (b *SCIMBatch) Get(kind, id string) (SCIMRecord, error) {
	r, err := scimRow(b.ctx, b.tx, b.org.ID, kind, id, AnyVersion)
	return recordView(r), err
}

// PutUser is SCIMPutUser inside the batch (call it from a Step).
func (b *SCIMBatch) PutUser(id string, in SCIMUserState, version int64) (SCIMRecord, bool, error) {
	b.action = "scim.user.put"
	if err := in.validate(); err != nil {
		return SCIMRecord{}, false, err
	}
	rec, err := b.s.scimPutUser(b.ctx, b.tx, b.o, b.org, id, in, version)
	return rec, id == "", err
}

// PutGroup is SCIMPutGroup inside the batch (call it from a Step).
func (b *SCIMBatch) PutGroup(id string, in SCIMGroupState, version int64) (SCIMRecord, bool, error) {
	b.action = "scim.group.put"
	if err := in.validate(); err != nil {
		return SCIMRecord{}, false, err
	}
	rec, err := b.s.scimPutGroup(b.ctx, b.tx, b.o, b.org, id, in, version)
	return rec, id == "", err
}

// DeleteUser is SCIMDeleteUser inside the batch (call it from a Step).
func (b *SCIMBatch) DeleteUser(id string, version int64) error {
	b.action = "scim.user.delete"
	return b.s.scimDeleteUser(b.ctx, b.tx, b.o, b.org, id, version)
}

// DeleteGroup is SCIMDeleteGroup inside the batch (call it from a Step).
func (b *SCIMBatch) DeleteGroup(id string, version int64) error {
	b.action = "scim.group.delete"
	return b.s.scimDeleteGroup(b.ctx, b.tx, b.o, b.org, id, version)
}
