package store

import (
	"context"
	"time"
)

// What a store may use to spend fewer round trips on a write; a store that
// cannot ignores them (the memory store has no round trips). None changes a
// result.

type readAheadKey struct{}

// ReadAhead names rows a write transaction reads before it writes anything.
// A store that can (PostgreSQL) reads them in the round trip that begins the
// transaction and takes its locks, after the locks, and answers the
// transaction's reads of exactly these rows from what it read until the
// transaction's first write; later reads go to the database as before.
type ReadAhead struct {
	Org  string // an organization id: GetOrg(Org)
	User string // a user id: GetUser(User) and GroupsOf("user", User)
	// with both: GetMembership(Org, User)
}

// WithReadAhead marks ctx's write transactions as beginning with ra's reads.
func WithReadAhead(ctx context.Context, ra ReadAhead) context.Context {
	return context.WithValue(ctx, readAheadKey{}, ra)
}

// ReadAheadOf is what WithReadAhead put in ctx.
func ReadAheadOf(ctx context.Context) (ReadAhead, bool) {
	ra, ok := ctx.Value(readAheadKey{}).(ReadAhead)
	return ra, ok
}

// TailPlanner is a Tx that can prepare the tail of a write transaction (its
// audit events and outbox entry, which run under the store's append lock) in
// fewer round trips when told beforehand: the audit chains it will append to
// (organization ids, "" the platform's) and whether it appends an outbox
// entry. PostgreSQL then reads every planned chain's head and reserves the
// entry's seq in the round trip that takes the append lock, and sends the
// events, the entry and the commit in one more. A plan the transaction does
// not follow costs nothing but a gap in outbox seqs.
type TailPlanner interface {
	PlanTail(chains []string, outbox bool)
}

// LaterMarker is an OutboxClaim that can send a mark with the claim's next
// read, or with the release of the claim when there is none: one round trip
// fewer per relay pass. The mark is durable when that read or ClaimOutbox
// returns without error; the caller must not write to the engine before then
// (so a crash still re-applies at most the newest write).
type LaterMarker interface {
	MarkOutboxAppliedLater(seqs []int64, revision string, at time.Time)
}
