package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// Advisory lock keys beside writeLock and migrateLock: the outbox's one
// applier (a session lock), and the schema and signing-key appenders
// (transaction locks).
const (
	relayLock      = writeLock + 2
	schemaLock     = writeLock + 3
	signingKeyLock = writeLock + 4
)

// ClaimOutbox takes the session advisory lock relayLock on a connection of
// its own and runs fn while holding it, so one applier at a time, across
// every process on this database, reads pending entries and marks them
// applied. The lock goes with the session: a process that dies releases it,
// and another node's relay resumes at the first unmarked entry. Each claim
// call is one autocommit round trip, so marks are durable as they are made.
// A pass costs two round trips: the lock goes with the first read of pending
// entries, the last mark (MarkOutboxAppliedLater) with the unlock.
func (s *Store) ClaimOutbox(ctx context.Context, fn func(c store.OutboxClaim) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return translate("acquiring a connection for the outbox relay", err)
	}
	c := &outboxClaim{conn: conn}
	err = fn(c)
	return errors.Join(err, c.release(ctx))
}

// outboxClaim sends the relay lock with its first statement and a mark made
// later with its next read or its release.
type outboxClaim struct {
	conn   *pgxpool.Conn
	locked bool
	marks  []pendingMark
}

type pendingMark struct {
	seqs     []int64
	revision string
	at       time.Time
}

const markSQL = `UPDATE outbox SET applied_at = $2, revision = $3 WHERE seq = ANY($1)`

// send runs, in one round trip, the lock if not yet taken, the marks waiting,
// then sql (if not empty), whose result the caller reads from the returned
// batch and closes. The round trip is one implicit transaction, committed
// after its last statement: if sql fails, the marks sent with it are undone
// too, and the pass reports the failure (its entries are applied again, as
// after a crash). With commitFirst the marks are committed before sql runs
// (BEGIN … COMMIT around them): the unlock must not let another applier read
// the outbox before the marks are visible.
func (c *outboxClaim) send(ctx context.Context, commitFirst bool, sql string, args ...any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	locking := !c.locked
	if locking {
		b.Queue(`SELECT pg_advisory_lock($1)`, relayLock)
	}
	marks := c.marks
	c.marks = nil
	wrap := commitFirst && len(marks) > 0
	if wrap {
		b.Queue(`begin`)
	}
	for _, m := range marks {
		b.Queue(markSQL, m.seqs, m.at, m.revision)
	}
	if wrap {
		b.Queue(`commit`)
	}
	if sql != "" {
		b.Queue(sql, args...)
	}
	br := c.conn.SendBatch(ctx, b)
	if locking {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, translate("taking the outbox relay lock", err)
		}
		c.locked = true
	}
	if wrap {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, translate("mark outbox entries applied", err)
		}
	}
	for _, mark := range marks {
		tag, err := br.Exec()
		if err == nil && int(tag.RowsAffected()) != len(mark.seqs) {
			err = fmt.Errorf("%w: marking outbox entries %v applied touched %d rows", trellis.ErrNotFound, mark.seqs, tag.RowsAffected())
		}
		if err != nil {
			_ = br.Close()
			return nil, translate("mark outbox entries applied", err)
		}
	}
	if wrap {
		tag, err := br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("the marks were rolled back (%s)", tag)
		}
		if err != nil {
			_ = br.Close()
			return nil, translate("mark outbox entries applied", err)
		}
	}
	return br, nil
}

// release sends the mark still waiting with the unlock and gives the
// connection back; a session that may still hold the lock is closed.
func (c *outboxClaim) release(ctx context.Context) error {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	defer c.conn.Release()
	if !c.locked {
		return nil // nothing read, nothing marked
	}
	var err error
	unlocked := false
	// the marks committed before the unlock: the next holder reads them
	br, err := c.send(uctx, true, `SELECT pg_advisory_unlock($1)`, relayLock)
	if err == nil {
		err = br.QueryRow().Scan(&unlocked)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		err = translate("releasing the outbox relay lock", err)
	}
	if err != nil || !unlocked {
		// the session may still hold it: end the session, which releases it
		_ = c.conn.Conn().Close(uctx)
	}
	return err
}

func (c *outboxClaim) PendingOutbox(ctx context.Context, n int) ([]store.OutboxEntry, error) {
	br, err := c.send(ctx, false, outboxSelect+`WHERE applied_at IS NULL ORDER BY seq LIMIT NULLIF($1::bigint, 0)`, limit(n))
	if err != nil {
		return nil, err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, translate("list pending outbox entries", err)
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, translate("list pending outbox entries", err)
		}
		out = append(out, e)
	}
	return out, translate("list pending outbox entries", rows.Err())
}

func (c *outboxClaim) MarkOutboxApplied(ctx context.Context, seqs []int64, revision string, at time.Time) error {
	c.MarkOutboxAppliedLater(seqs, revision, at)
	br, err := c.send(ctx, false, "")
	if err != nil {
		return err
	}
	return translate("mark outbox entries applied", br.Close())
}

// MarkOutboxAppliedLater: store.LaterMarker.
func (c *outboxClaim) MarkOutboxAppliedLater(seqs []int64, revision string, at time.Time) {
	c.marks = append(c.marks, pendingMark{seqs: slices.Clone(seqs), revision: revision, at: at})
}

// ---- schema versions

const schemaVersionSelect = `SELECT version, app_text, text, applied_at, applied_by, written_at FROM schema_versions `

func scanSchemaVersion(r scanner) (store.SchemaVersion, error) {
	var v store.SchemaVersion
	return v, r.Scan(&v.Version, &v.AppText, &v.Text, &v.AppliedAt, &v.AppliedBy, &v.WrittenAt)
}

func (t *tx) LatestSchemaVersion(ctx context.Context) (store.SchemaVersion, error) {
	if t.write {
		if _, err := t.exec(ctx, "take the schema lock", `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
			return store.SchemaVersion{}, err
		}
	}
	return one(ctx, t, "read the newest schema version", func() error {
		return fmt.Errorf("%w: no schema version", trellis.ErrNotFound)
	}, scanSchemaVersion, schemaVersionSelect+`ORDER BY version DESC LIMIT 1`)
}

func (t *tx) GetSchemaVersion(ctx context.Context, version int) (store.SchemaVersion, error) {
	return one(ctx, t, "read a schema version", func() error {
		return fmt.Errorf("%w: schema version %d", trellis.ErrNotFound, version)
	}, scanSchemaVersion, schemaVersionSelect+`WHERE version = $1`, version)
}

func (t *tx) ListSchemaVersions(ctx context.Context) ([]store.SchemaVersion, error) {
	return all(ctx, t, "list schema versions", scanSchemaVersion, schemaVersionSelect+`ORDER BY version`)
}

func (t *tx) InsertSchemaVersion(ctx context.Context, v store.SchemaVersion) error {
	if err := t.usable("insert a schema version", true); err != nil {
		return err
	}
	// the next version only, as memory: the read and the insert are one statement
	n, err := t.exec(ctx, "insert a schema version",
		`INSERT INTO schema_versions (version, app_text, text, applied_at, applied_by, written_at)
		SELECT $1, $2, $3, $4, $5, $6
		WHERE $1 = (SELECT coalesce(max(version), 0) + 1 FROM schema_versions) OR EXISTS (SELECT 1 FROM schema_versions WHERE version = $1)`,
		v.Version, validUTF8(v.AppText), validUTF8(v.Text), v.AppliedAt, validUTF8(v.AppliedBy), v.WrittenAt)
	if err != nil {
		return err
	}
	if n == 0 {
		return trellis.Invalid("version", "must be the next version, got %d", v.Version)
	}
	return nil
}

// ---- signing keys

func (t *tx) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if t.write {
		if _, err := t.exec(ctx, "take the signing key lock", `SELECT pg_advisory_xact_lock($1)`, signingKeyLock); err != nil {
			return nil, err
		}
	}
	return all(ctx, t, "list signing keys", func(r scanner) (store.SigningKey, error) {
		var k store.SigningKey
		return k, r.Scan(&k.ID, &k.Algorithm, &k.Sealed, &k.CreatedAt)
	}, `SELECT id, algorithm, sealed, created_at FROM signing_keys ORDER BY created_at DESC, id DESC`)
}

func (t *tx) InsertSigningKey(ctx context.Context, k store.SigningKey) error {
	_, err := t.exec(ctx, "insert a signing key",
		`INSERT INTO signing_keys (id, algorithm, sealed, created_at) VALUES ($1, $2, $3, $4)`,
		validUTF8(k.ID), validUTF8(k.Algorithm), k.Sealed, k.CreatedAt)
	return err
}

func (t *tx) DeleteSigningKey(ctx context.Context, id string) error {
	n, err := t.exec(ctx, "delete a signing key", `DELETE FROM signing_keys WHERE id = $1`, id)
	if err == nil && n == 0 {
		err = notFound("signing key", id)
	}
	return err
}
