package store

import (
	"context"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// RelationshipChange is one transaction committed to the graph, as the
// relationship changelog records it (ADR 0017): every touch and delete it
// made, each naming the whole tuple (a delete by filter is recorded as the
// tuples it removed), with their expiries and caveats.
type RelationshipChange struct {
	Seq     int64
	At      time.Time // when the changelog recorded it (at or just after its commit)
	Updates []engine.RelationshipUpdate
	// Baseline marks the graph's content when the changelog started: every
	// relationship then stored, as touches.
	Baseline bool
}

// ChangelogRows are the relationship changelog. One writer at a time
// advances it: the cursor moves with the changes it covers, in one
// transaction, and only from where the writer read it.
type ChangelogRows interface {
	// ChangelogCursor returns the engine's watch cursor the changelog runs
	// through ("" before it started).
	ChangelogCursor(ctx context.Context) (string, error)
	// AppendChanges stores changes (in order) and moves the cursor from
	// `from` to `to`; ErrConflict when the stored cursor is no longer `from`
	// (another node recorded them).
	AppendChanges(ctx context.Context, from, to string, changes []RelationshipChange) error
	// ChangesUntil lists the changes recorded at or before until, in Seq order.
	ChangesUntil(ctx context.Context, until time.Time) ([]RelationshipChange, error)
	// ChangelogStart is when the changelog's oldest change was recorded
	// (zero before it started).
	ChangelogStart(ctx context.Context) (time.Time, error)
}
