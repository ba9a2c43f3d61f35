package conformance

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// testSavepoints: a failed savepoint undoes its writes — every write method,
// and a statement the database refused — while the transaction goes on and
// commits what the others wrote; nested savepoints undo only their own part.
func testSavepoints(t *testing.T, s store.Store) {
	seed(t, s)
	seq := seededOutboxSeq(t, s)
	before := snapshot(t, s, seq)
	ctx := t.Context()
	kept := userRow("usr_k1", "kept@example.com")
	inner := userRow("usr_k2", "inner@example.com")
	mustTx(t, s, func(tx store.Tx) error {
		err := tx.Savepoint(ctx, func() error {
			for _, w := range writes(seq) {
				if err := w.fn(ctx, tx); err != nil {
					return fmt.Errorf("%s inside the savepoint: %w", w.name, err)
				}
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			return fmt.Errorf("savepoint of every write: %v, want errBoom", err)
		}
		// a refused statement (a taken email) is undone with its savepoint
		err = tx.Savepoint(ctx, func() error { return tx.InsertUser(ctx, userRow("usr_x1", "ada@example.com")) })
		if !errors.Is(err, trellis.ErrConflict) {
			return fmt.Errorf("savepoint of a conflicting insert: %v, want ErrConflict", err)
		}
		// nested: the inner failure leaves the outer write
		err = tx.Savepoint(ctx, func() error {
			if err := tx.InsertUser(ctx, kept); err != nil {
				return err
			}
			if err := tx.Savepoint(ctx, func() error {
				if err := tx.InsertUser(ctx, inner); err != nil {
					return err
				}
				return errBoom
			}); !errors.Is(err, errBoom) {
				return fmt.Errorf("inner savepoint: %v, want errBoom", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("outer savepoint: %w", err)
		}
		// the transaction is still usable: reads and writes after the failures
		if _, err := tx.GetUser(ctx, "usr_a1"); err != nil {
			return fmt.Errorf("a read after the failed savepoints: %w", err)
		}
		return nil
	})
	if d := diffKeys(before, snapshot(t, s, seq)); len(d) > 0 {
		t.Errorf("failed savepoints left changes in: %q", d)
	}
	_ = s.Read(ctx, func(tx store.Tx) error {
		if got, err := tx.GetUser(ctx, kept.ID); err != nil || got.Email != kept.Email {
			t.Errorf("the kept savepoint's user: %+v, %v", got, err)
		}
		if _, err := tx.GetUser(ctx, inner.ID); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("the failed inner savepoint's user: %v, want ErrNotFound", err)
		}
		if _, err := tx.GetUser(ctx, "usr_x1"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("the refused insert's user: %v, want ErrNotFound", err)
		}
		return nil
	})
}
