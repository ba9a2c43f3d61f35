package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/engine"
)

// profiling is the file the next run's CPU profile goes to (-cpuprofile).
var profiling *os.File

// counters count, over the whole process, what one write costs (-count).
var counters counts

type counts struct {
	statements, roundTrips, inTx atomic.Int64 // SQL
	checks, reads, writes        atomic.Int64 // calls that reached SpiceDB (past the check cache)
}

type countSnapshot struct{ statements, roundTrips, inTx, checks, reads, writes int64 }

func (c *counts) snapshot() countSnapshot {
	return countSnapshot{c.statements.Load(), c.roundTrips.Load(), c.inTx.Load(), c.checks.Load(), c.reads.Load(), c.writes.Load()}
}

func (a countSnapshot) minus(b countSnapshot) countSnapshot {
	return countSnapshot{a.statements - b.statements, a.roundTrips - b.roundTrips, a.inTx - b.inTx,
		a.checks - b.checks, a.reads - b.reads, a.writes - b.writes}
}

// sqlCounter is a pgx tracer: a query is one statement in one round trip, a
// batch its queued statements in one round trip.
type sqlCounter struct{}

func (sqlCounter) TraceQueryStart(ctx context.Context, conn *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	counters.statements.Add(1)
	counters.roundTrips.Add(1)
	if conn.PgConn().TxStatus() == 'T' || conn.PgConn().TxStatus() == 'E' {
		counters.inTx.Add(1)
	}
	return ctx
}

func (sqlCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (sqlCounter) TraceBatchStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	counters.roundTrips.Add(1)
	// in a transaction, or beginning one (the store sends BEGIN with its locks)
	if s := conn.PgConn().TxStatus(); s == 'T' || s == 'E' ||
		d.Batch.Len() > 0 && strings.HasPrefix(d.Batch.QueuedQueries[0].SQL, "begin") {
		counters.inTx.Add(1)
	}
	counters.statements.Add(int64(d.Batch.Len()))
	return ctx
}

func (sqlCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (sqlCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// countingEngine counts the calls that reach SpiceDB.
type countingEngine struct{ engine.Engine }

func (e *countingEngine) Check(ctx context.Context, req engine.CheckRequest) (engine.CheckResult, error) {
	counters.checks.Add(1)
	return e.Engine.Check(ctx, req)
}

func (e *countingEngine) ReadRelationships(ctx context.Context, req engine.ReadRequest) (engine.ReadPage, error) {
	counters.reads.Add(1)
	return e.Engine.ReadRelationships(ctx, req)
}

func (e *countingEngine) WriteRelationships(ctx context.Context, updates []engine.RelationshipUpdate) (string, error) {
	counters.writes.Add(1)
	return e.Engine.WriteRelationships(ctx, updates)
}
