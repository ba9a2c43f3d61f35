package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Write locks (transaction-level advisory locks, released at commit or rollback):
//
//   - An unconfined write transaction takes writeLock exclusively: it runs alone.
//   - A transaction confined to tenants (store.WithTenants) takes writeLock
//     shared, then each tenant's lock (sorted, so two never wait on each other
//     in a cycle): writers of different tenants run in parallel, writers of one
//     tenant one at a time, and none alongside an unconfined writer.
//   - Every writer takes appendLock before its first audit event or outbox
//     entry and keeps it until commit: the tail of the transaction (audit heads
//     read and moved, events and the entry inserted, commit) is serialized, so
//     audit positions and outbox seqs still grow in commit order (the relay and
//     audit cursors rely on it), while the reads, authorization and row writes
//     before it run in parallel. The tail never waits on a row another
//     transaction holds (it writes only its own chains' heads and inserts).
//
// Lock order: writeLock, tenant locks, appendLock (then the schema or
// signing-key lock, taken only by unconfined transactions).
const (
	appendLock = writeLock + 5
	// tenantLockClass is the first key of the two-key advisory locks of tenants;
	// the second is hashtext(tenant id). A collision only serializes two tenants.
	tenantLockClass int32 = 0x74726c73 // "trls"
)

// queueWriteLocks queues the write locks of a transaction confined to
// tenants (none: unconfined) in b: the shared lock, then the tenants' locks in
// order; or the exclusive lock.
func queueWriteLocks(b *pgx.Batch, tenants []string) {
	if len(tenants) == 0 {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, writeLock)
		return
	}
	b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, writeLock)
	for _, t := range tenants {
		b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, tenantLockClass, t)
	}
}

func writeLocksOp(tenants []string) string {
	if len(tenants) == 0 {
		return "taking the write lock"
	}
	return "taking the write lock (shared) and the tenants' locks"
}

// lockTail takes appendLock once per transaction.
func (t *tx) lockTail(ctx context.Context) error {
	if t.tail {
		return nil
	}
	if _, err := t.exec(ctx, "take the append lock", `SELECT pg_advisory_xact_lock($1)`, appendLock); err != nil {
		return err
	}
	t.tail = true
	return nil
}
