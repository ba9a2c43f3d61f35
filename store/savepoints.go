package store

import "context"

// Savepoints lets one transaction undo part of itself: a batch of operations
// (a SCIM /Bulk request) commits the ones that succeeded and none of the
// writes of the ones that failed.
type Savepoints interface {
	// Savepoint runs fn inside tx. When fn returns an error, every write fn
	// made through tx is undone, the transaction stays usable (even after a
	// statement of fn failed) and Savepoint returns fn's error; otherwise
	// fn's writes stay part of the transaction. Savepoints nest. If the
	// undo itself fails (the database connection broke), that error is
	// returned and the transaction must be abandoned.
	Savepoint(ctx context.Context, fn func() error) error
}
