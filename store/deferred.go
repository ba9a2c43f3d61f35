package store

import "context"

type deferKey struct{}

// DeferWrites marks ctx so that the row writes that return nothing but an
// error — InsertUser, PutMembership, InsertGroup, PutGroupMember and
// PutSCIMResource — may be sent to the database with the transaction's next
// statement instead of one round trip each (a SCIM request's rows: the
// directory checked their keys first). Such a write's failure (a taken key)
// is then reported by that later statement, by the end of the Savepoint the
// write was made in (which then undoes it), by Flush, or by InTx, which
// commits nothing: it never goes unreported and never commits. A caller that
// acts on a write's own error must not defer it. A store may write at once.
func DeferWrites(ctx context.Context) context.Context {
	return context.WithValue(ctx, deferKey{}, true)
}

// WritesDeferred reports whether ctx is DeferWrites'.
func WritesDeferred(ctx context.Context) bool {
	d, _ := ctx.Value(deferKey{}).(bool)
	return d
}

// Deferred is what a transaction offers writers that defer (DeferWrites).
type Deferred interface {
	// Flush sends what the transaction deferred and reports its failure,
	// the first deferred write's that failed; the transaction is then over
	// (or, inside a Savepoint, that savepoint's part of it).
	Flush(ctx context.Context) error
}
