package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
)

// writeLock is the key of the transaction-level advisory lock every InTx
// takes first ("trellis" in ASCII): exclusively, so the writer runs alone, as
// in the memory store, or shared by writers confined to tenants (locks.go).
// Migrate's session lock uses the next key.
const writeLock int64 = 0x7472656c6c6973

// rollbackTimeout bounds a rollback, which runs even when the caller's context
// has ended; a connection that cannot roll back in time is closed, and the
// server rolls back on its own.
const rollbackTimeout = 5 * time.Second

// Store is the PostgreSQL store.Store: a pgx connection pool over the schema
// Migrate creates. Open it with Open; it is safe for concurrent use.
//
// InTx is one READ COMMITTED transaction that first takes the write locks
// (locks.go; BEGIN, the locks and the reads named by store.ReadAhead go in
// one round trip, begin.go): writeLock exclusively, or shared plus the locks of the tenants
// the context confines it to (store.WithTenants). Each statement sees every
// earlier writer's commit; the append lock around each transaction's tail
// keeps outbox seqs and audit positions in commit order, and each audit
// chain's seq is checked against its head with no race. Writers of one Store
// also queue in the process (half the pool's connections at once) before they
// take a connection, so that waiting writers never hold the pool's
// connections away from readers. Read is
// one REPEATABLE READ, READ ONLY transaction: every statement in it sees the
// same snapshot, and writers do not wait for it.
//
// Calling InTx or Read from inside a closure can deadlock, as with memory.
type Store struct {
	pool      *pgxpool.Pool
	writer    chan struct{} // holds a token while this Store runs a write transaction
	closed    atomic.Bool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or key=value DSN as
// pgx reads it; pool settings such as pool_max_conns go there too) and checks
// that Migrate has brought its schema up to this build's version. ctx bounds
// the first connection. A server that cannot be reached is trellis.ErrUnavailable.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: %w", err) // pgx redacts the password
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open for a pool configuration the caller parsed (and may have
// given a pgx tracer, as benchmarks/writes does to count statements).
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	cfg.AfterConnect = registerTypes
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, translate("opening the pool", err)
	}
	s := &Store{pool: pool, writer: make(chan struct{}, max(1, cfg.MaxConns/2))}
	if err := s.checkSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// registerTypes makes timestamptz scan in UTC on every connection (pgx's
// default is time.Local), arrays of it included.
func registerTypes(_ context.Context, conn *pgx.Conn) error {
	ts := &pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}}
	conn.TypeMap().RegisterType(ts)
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "_timestamptz", OID: pgtype.TimestamptzArrayOID, Codec: &pgtype.ArrayCodec{ElementType: ts}})
	return nil
}

// checkSchema refuses a database whose schema is older than this build's
// migrations; a newer one is accepted (migrations only add).
func (s *Store) checkSchema(ctx context.Context) error {
	var have int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM `+migrationTable).Scan(&have)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: never migrated
		have, err = 0, nil
	}
	if err != nil {
		return translate("reading the schema version", err)
	}
	if want := latestMigration(); have < want {
		return fmt.Errorf("store/postgres: the database schema is at version %d and this build needs %d: run `trellis migrate` first", have, want)
	}
	return nil
}

// InTx runs fn in one transaction that holds the write lock. If fn fails,
// panics, or ctx ends before it returns, the transaction rolls back; so does
// one in which a statement failed even though fn returned nil (PostgreSQL
// aborts a transaction at its first failed statement), and InTx then returns
// that statement's error.
func (s *Store) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	select {
	case s.writer <- struct{}{}:
		defer func() { <-s.writer }()
	case <-ctx.Done():
		return translate("waiting for the write lock", ctx.Err())
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return translate("beginning a transaction", err)
	}
	t := &tx{tx: conn, write: true, types: conn.Conn().TypeMap()}
	committed := false
	// Deferred, so that a panic or runtime.Goexit (t.FailNow in a test) rolls back too.
	defer func() {
		t.done = true
		if !committed {
			rollbackConn(ctx, conn)
		}
		conn.Release() // a connection left in a transaction is closed, not reused
	}()
	ra, _ := store.ReadAheadOf(ctx)
	if err := t.begin(ctx, store.Tenants(ctx), ra); err != nil {
		return err
	}
	if err := fn(t); err != nil {
		return err
	}
	if t.err != nil {
		return fmt.Errorf("store/postgres: not committed, a statement failed: %w", t.err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	committed = true
	return nil
}

// Read runs fn in a read-only transaction over one snapshot; writes inside it fail.
func (s *Store) Read(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return translate("beginning a read", err)
	}
	t := &tx{tx: ptx}
	defer func() {
		t.done = true
		rollback(ctx, ptx) // nothing to commit
	}()
	return fn(t)
}

// rollbackConn ends the transaction on conn, if one is open; a connection
// that cannot roll back in time is closed, and the server rolls back on its own.
func rollbackConn(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return // never began, or ended
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, "rollback"); err != nil {
		_ = conn.Conn().Close(ctx)
	}
}

func rollback(ctx context.Context, ptx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = ptx.Rollback(ctx) // on failure pgx closes the connection, which rolls back too
}

// Ready pings the database.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return translate("ping", s.pool.Ping(ctx))
}

// Close closes the pool, waiting for connections in use to be released. It
// may be called again.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.Close()
	})
	return nil
}

// TamperAudit lets mutate edit the stored event seq of org's chain in place,
// bypassing the chain and its head on purpose: tests use it to play an
// attacker with raw access to the database and check that audit verification
// notices. The event stays in org's chain and in its place in the log even if
// mutate changes its Seq or Organization. Never call it outside tests.
func (s *Store) TamperAudit(org string, seq int64, mutate func(ev *audit.Event)) error {
	ctx := context.Background()
	return s.InTx(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		pos, ev, err := t.chainEvent(ctx, org, seq)
		if err != nil {
			return err
		}
		mutate(&ev)
		details, err := marshalDetails(ev.Details)
		if err != nil {
			return err
		}
		_, err = t.exec(ctx, "tampering with an audit event",
			`UPDATE audit_events SET seq = $2, at = $3, actor = $4, impersonator = $5, action = $6, target = $7,
				organization = $8, details = $9, prev_hash = $10, hash = $11, checkpoint = $12
			WHERE position = $1`,
			pos, ev.Seq, ev.At, validUTF8(ev.Actor), validUTF8(ev.Impersonator), validUTF8(ev.Action),
			validUTF8(ev.Target), ev.Organization, details, ev.PrevHash, ev.Hash, ev.Checkpoint)
		return err
	})
}

// TamperAuditHead lets mutate edit org's stored head in place, as an attacker
// with raw access to the database would after rewriting events: a test hook,
// like TamperAudit. org must have a head.
func (s *Store) TamperAuditHead(org string, mutate func(h *audit.Head)) error {
	ctx := context.Background()
	return s.InTx(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		h, err := t.AuditHead(ctx, org)
		if err != nil {
			return err
		}
		if h == (audit.Head{}) {
			return fmt.Errorf("%w: audit head of organization %q", trellis.ErrNotFound, org)
		}
		mutate(&h)
		_, err = t.exec(ctx, "tampering with an audit head",
			`UPDATE audit_heads SET seq = $2, hash = $3, checkpoint = $4 WHERE org = $1`, org, h.Seq, h.Hash, h.Checkpoint)
		return err
	})
}

// DeleteAuditEvent removes the stored event seq of org's chain from the chain
// and the global log, leaving the head where it was: like TamperAudit, an
// attacker's edit for tests of audit verification.
func (s *Store) DeleteAuditEvent(org string, seq int64) error {
	ctx := context.Background()
	return s.InTx(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		n, err := t.exec(ctx, "deleting an audit event",
			`DELETE FROM audit_events WHERE position =
				(SELECT position FROM audit_events WHERE org = $1 AND seq = $2 ORDER BY position LIMIT 1)`,
			org, seq)
		if err == nil && n == 0 {
			err = auditNotFound(org, seq)
		}
		return err
	})
}

// ---- transactions

// session is what a transaction sends its statements through: a pgx.Tx (a
// read) or a pooled connection on which InTx began the transaction itself
// (begin.go), so that BEGIN and COMMIT share round trips with other statements.
type session interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// tx is one transaction; it is not safe for concurrent use, like pgx.Tx.
type tx struct {
	tx    session
	types *pgtype.Map // the connection's, to scan rows read ahead
	write bool
	done  bool
	tail  bool  // holds appendLock: its audit positions and outbox seqs are in commit order
	err   error // the first failed statement's: PostgreSQL has aborted the transaction
	// heads: audit heads read or moved under appendLock; queued: writes sent
	// with the next round trip (tail.go)
	heads  map[string]audit.Head
	queued []queuedStmt
	// savepoints numbers the transaction's savepoints (Savepoint)
	savepoints int
	// ahead: rows read with BEGIN (store.ReadAhead) until the first write;
	// wrote: a write was sent or queued
	ahead map[string]*aheadRows
	wrote bool
	// plan: chains and outbox entry the tail will append (store.TailPlanner);
	// reserved: the outbox seq taken with the append lock, not used yet
	plan     tailPlan
	reserved int64
}

var _ store.Tx = (*tx)(nil)

// scanner is a row to scan: pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// usable refuses statements that cannot succeed, before they reach the server.
func (t *tx) usable(op string, write bool) error {
	switch {
	case t.done:
		return fmt.Errorf("store/postgres: %s through a transaction that has ended", op)
	case write && !t.write:
		return fmt.Errorf("store/postgres: %s in a read-only transaction", op)
	case t.err != nil && errors.Is(t.err, trellis.ErrUnavailable):
		// The database could not answer the transaction (its connection
		// broke, the server is shutting down, a timeout): nor can it answer
		// this statement, even if the caller went on past the first failure,
		// as a lookup that hopes for "not found" may.
		return fmt.Errorf("%w: store/postgres: %s in a transaction the database could not answer (%v)", trellis.ErrUnavailable, op, t.err)
	case t.err != nil:
		// Not %w: this statement did not conflict or fail validation; the
		// caller went on past an error it should have returned.
		return fmt.Errorf("store/postgres: %s in a transaction aborted by an earlier error (%v)", op, t.err)
	}
	return nil
}

// fail translates err and remembers the first one: the transaction is over.
func (t *tx) fail(op string, err error) error {
	err = translate(op, err)
	if t.err == nil {
		t.err = err
	}
	return err
}

// exec runs a write and returns how many rows it touched.
func (t *tx) exec(ctx context.Context, op, sql string, args ...any) (int64, error) {
	if err := t.usable(op, true); err != nil {
		return 0, err
	}
	t.wrote = true
	if len(t.queued) > 0 {
		br, err := t.sendQueued(ctx, sql, args...)
		if err != nil {
			return 0, err
		}
		tag, err := br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, t.fail(op, err)
		}
		return tag.RowsAffected(), nil
	}
	tag, err := t.tx.Exec(ctx, sql, args...)
	if err != nil {
		return 0, t.fail(op, err)
	}
	return tag.RowsAffected(), nil
}

// all runs a query and scans every row.
func all[T any](ctx context.Context, t *tx, op string, scan func(scanner) (T, error), sql string, args ...any) ([]T, error) {
	if err := t.usable(op, false); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(sql, "SELECT ") {
		t.wrote = true // INSERT … RETURNING
	} else if rows, ok := t.readAhead(sql, args); ok {
		return scanAhead(t, op, rows, scan)
	}
	if len(t.queued) > 0 {
		br, err := t.sendQueued(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		rows, err := br.Query()
		var out []T
		if err == nil {
			out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, t.fail(op, err)
		}
		return out, nil
	}
	rows, err := t.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, t.fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, t.fail(op, err)
	}
	return out, nil
}

// one runs a query for one row; no row is missing's error.
func one[T any](ctx context.Context, t *tx, op string, missing func() error, scan func(scanner) (T, error), sql string, args ...any) (T, error) {
	rows, err := all(ctx, t, op, scan, sql, args...)
	switch {
	case err != nil:
		var zero T
		return zero, err
	case len(rows) == 0:
		var zero T
		return zero, missing()
	}
	return rows[0], nil
}
