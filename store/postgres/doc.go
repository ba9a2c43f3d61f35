// Package postgres is the PostgreSQL implementation of store.Store: a pgx v5
// connection pool, the schema as embedded SQL migrations applied by goose
// (Migrate), and one transaction per InTx or Read. Writers serialize on a
// transaction-level advisory lock, so outbox seqs and audit positions grow in
// commit order and each audit chain's seq is checked against its head without
// a race; reads run on a REPEATABLE READ snapshot and never wait for writers.
// Driver errors are translated here, once: unique violations become
// trellis.ErrConflict, missing rows trellis.ErrNotFound, an unreachable or
// failing server trellis.ErrUnavailable. It must pass store/conformance
// exactly as store/memory does.
//
// postgres imports store, audit, engine (value types only), trellis (the
// sentinel errors), pgx and goose. It must never import directory, api,
// federation or scim.
package postgres
