package store

import (
	"context"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// ChangelogIndex reads the relationship changelog by object and compacts it
// (ADR 0017). Every change appended is indexed by the objects its updates are
// about (their resources), so an answer at a past time reads the changes of
// the objects it reaches rather than every tenant's.
type ChangelogIndex interface {
	// ObjectChanges lists, in Seq order, the changes recorded at or before
	// until from the last baseline recorded by then (included), each holding
	// only its updates whose resource is one of objects (changes with none
	// are left out, baselines kept). Before any baseline: none.
	ObjectChanges(ctx context.Context, objects []engine.ObjectRef, until time.Time) ([]RelationshipChange, error)
	// CompactChanges replaces every change of Seq at most through by base, a
	// baseline (the state they fold into) stored at Seq through; its At is
	// the one given. ErrNotFound when no change has Seq through.
	CompactChanges(ctx context.Context, through int64, base RelationshipChange) error
}
