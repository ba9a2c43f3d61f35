package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/trellis-iam/trellis"
)

// Savepoint runs fn between SAVEPOINT and RELEASE, or ROLLBACK TO SAVEPOINT
// when fn fails: PostgreSQL then forgets fn's writes and the failed statement
// that aborted the transaction, if there was one, so the transaction goes on.
// Locks fn took (the append lock) are released with its subtransaction, so
// the lock flag is restored too, and the audit heads it remembers forgotten.
// Writes fn deferred (store.DeferWrites) are sent with RELEASE: when one
// fails, fn's part is rolled back as if fn had failed, and its error returned.
func (t *tx) Savepoint(ctx context.Context, fn func() error) error {
	if err := t.usable("savepoint", true); err != nil {
		return err
	}
	t.savepoints++
	name := fmt.Sprintf("trellis_sp_%d", t.savepoints)
	if _, err := t.exec(ctx, "savepoint", `SAVEPOINT `+name); err != nil {
		return err
	}
	tail, failed := t.tail, t.err
	ferr := fn()
	if ferr == nil && t.err == nil {
		// what fn deferred goes with RELEASE: its failure is fn's, undone with it
		_, err := t.exec(ctx, "release savepoint", `RELEASE SAVEPOINT `+name)
		if err == nil || t.err == nil || errors.Is(err, trellis.ErrUnavailable) {
			return err
		}
		ferr = err
	}
	if ferr == nil { // fn went on past a failed statement: report it, undo it
		ferr = fmt.Errorf("store/postgres: not kept, a statement failed: %w", t.err)
	}
	t.err = nil
	// what fn queued for the next round trip is fn's own (SAVEPOINT sent
	// everything queued before it): undone with it, never sent
	t.queued = nil
	if _, err := t.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT `+name); err != nil {
		return t.fail("rollback to savepoint", err)
	}
	t.tail, t.err = tail, failed
	t.reserved = 0 // perhaps taken under a lock fn's rollback released: a gap
	clear(t.heads) // fn may have moved heads it no longer moves: read them again
	return ferr
}
