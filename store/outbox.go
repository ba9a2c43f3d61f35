package store

import (
	"context"
	"time"
)

// OutboxClaimer hands the outbox to one applier at a time across every
// process that shares the store (PostgreSQL: a session advisory lock, held
// until ClaimOutbox returns or the process dies). Inside fn the caller alone
// reads pending entries and marks them applied, so entries reach the engine
// once each, in Seq order, whichever node committed them.
type OutboxClaimer interface {
	ClaimOutbox(ctx context.Context, fn func(c OutboxClaim) error) error
}

// OutboxClaim is the holder's view of the outbox while it holds the claim.
// Each call is its own transaction: a mark is durable once MarkOutboxApplied
// returns, so a crash re-applies at most the entries applied after the last mark.
type OutboxClaim interface {
	// PendingOutbox lists unapplied entries in Seq order, at most limit (<= 0: all).
	PendingOutbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	// MarkOutboxApplied marks every entry of seqs applied by the engine write
	// that returned revision.
	MarkOutboxApplied(ctx context.Context, seqs []int64, revision string, at time.Time) error
}
