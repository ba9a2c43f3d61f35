package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/trellis-iam/trellis/store"
)

// A write transaction begins and ends in round trips it shares (InTx):
//
//   - BEGIN, the write locks (locks.go) and the reads the operation named in
//     store.ReadAhead go in one batch. The reads run after the locks in that
//     batch, so they see what the transaction's own statements would; their
//     rows answer the transaction's identical reads until it first writes.
//   - COMMIT goes with the statements still queued (tail.go): the audit
//     events and the outbox entry.
//
// READ COMMITTED, never the server's default: each statement must see the
// commits of writers that held the lock before us. A REPEATABLE READ snapshot
// would be taken by the lock statement itself, before it waits.
const beginWrite = `begin isolation level read committed read write`

// aheadRows are the rows of one read made ahead, as the server sent them.
type aheadRows struct {
	fields []pgconn.FieldDescription
	values [][][]byte
}

// aheadRead is one read of store.ReadAhead, as the store method making it
// sends it: the same text and arguments, so that the method finds its rows.
type aheadRead struct {
	sql  string
	args []any
}

func readsAhead(ra store.ReadAhead) []aheadRead {
	var out []aheadRead
	if ra.Org != "" {
		out = append(out, aheadRead{getOrgSQL, []any{ra.Org}})
	}
	if ra.User != "" {
		out = append(out, aheadRead{getUserSQL, []any{ra.User}}, aheadRead{groupsOfSQL, []any{"user", ra.User}})
	}
	if ra.Org != "" && ra.User != "" {
		out = append(out, aheadRead{getMembershipSQL, []any{ra.Org, ra.User}})
	}
	return out
}

// aheadKey is a read's key: its text and its (string) arguments; false when
// an argument is not a string (no read ahead has one).
func aheadKey(sql string, args []any) (string, bool) {
	var b strings.Builder
	b.WriteString(sql)
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return "", false
		}
		b.WriteByte(0)
		b.WriteString(s)
	}
	return b.String(), true
}

// begin sends BEGIN, the write locks and the reads ahead in one round trip.
func (t *tx) begin(ctx context.Context, tenants []string, ra store.ReadAhead) error {
	b := &pgx.Batch{}
	b.Queue(beginWrite)
	queueWriteLocks(b, tenants)
	reads := readsAhead(ra)
	for _, r := range reads {
		b.Queue(r.sql, r.args...)
	}
	br := t.tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return translate("beginning a transaction", err)
	}
	for range b.Len() - 1 - len(reads) {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return translate(writeLocksOp(tenants), err)
		}
	}
	for _, r := range reads {
		rows, err := br.Query()
		var got aheadRows
		if err == nil {
			got.fields = append([]pgconn.FieldDescription(nil), rows.FieldDescriptions()...)
			for rows.Next() {
				raw := rows.RawValues()
				vals := make([][]byte, len(raw))
				for i, v := range raw {
					if v != nil {
						vals[i] = append([]byte{}, v...) // the buffer is reused by the next row
					}
				}
				got.values = append(got.values, vals)
			}
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			_ = br.Close()
			return t.fail("read ahead", err)
		}
		if t.ahead == nil {
			t.ahead = map[string]*aheadRows{}
		}
		k, _ := aheadKey(r.sql, r.args)
		t.ahead[k] = &got
	}
	if err := br.Close(); err != nil {
		return translate("beginning a transaction", err)
	}
	return nil
}

// readAhead is what begin read for this statement, if the transaction has
// written nothing since.
func (t *tx) readAhead(sql string, args []any) (*aheadRows, bool) {
	if len(t.ahead) == 0 || t.wrote {
		return nil, false
	}
	k, ok := aheadKey(sql, args)
	if !ok {
		return nil, false
	}
	rows, ok := t.ahead[k]
	return rows, ok
}

// aheadRow scans one row read ahead as pgx scans a row it receives.
type aheadRow struct {
	t      *tx
	fields []pgconn.FieldDescription
	values [][]byte
}

func (r aheadRow) Scan(dest ...any) error {
	return pgx.ScanRow(r.t.types, r.fields, r.values, dest...)
}

func scanAhead[T any](t *tx, op string, rows *aheadRows, scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	for _, v := range rows.values {
		x, err := scan(aheadRow{t: t, fields: rows.fields, values: v})
		if err != nil {
			return nil, t.fail(op, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// commit sends COMMIT with what is still queued.
func (t *tx) commit(ctx context.Context) error {
	const op = "committing (the outcome is unknown if the connection broke)"
	var (
		tag pgconn.CommandTag
		err error
	)
	if len(t.queued) == 0 {
		tag, err = t.tx.Exec(ctx, "commit")
	} else {
		br, qerr := t.sendQueued(ctx, "commit")
		if qerr != nil {
			return fmt.Errorf("store/postgres: not committed, a statement failed: %w", qerr)
		}
		tag, err = br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return translate(op, err)
	}
	if tag.String() != "COMMIT" { // the server rolled back (an aborted transaction)
		return fmt.Errorf("store/postgres: the transaction was rolled back at commit (%s)", tag)
	}
	return nil
}
