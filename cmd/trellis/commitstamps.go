package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// errNoCommitTimestamps: the server behind --database-url has
// track_commit_timestamp off.
var errNoCommitTimestamps = errors.New("commit timestamps are off")

// requireCommitTimestamps refuses to start the access history on SpiceDB's
// PostgreSQL datastore when the server does not track commit timestamps:
// SpiceDB's Watch, which the changelog recorder follows, reads them, and
// without them every POST /v1/access/at would fail long after the start.
func requireCommitTimestamps(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("--access-history: checking track_commit_timestamp on --database-url: %w", err)
	}
	defer conn.Close(context.Background())
	var on string
	if err := conn.QueryRow(ctx, "SHOW track_commit_timestamp").Scan(&on); err != nil {
		return fmt.Errorf("--access-history: reading track_commit_timestamp on --database-url: %w", err)
	}
	if on != "on" {
		return fmt.Errorf("%w: --access-history needs track_commit_timestamp = on in the PostgreSQL server behind --database-url "+
			"(SpiceDB's watch stream, which records the access history, reads commit timestamps), and it is off: "+
			"set it in postgresql.conf or with ALTER SYSTEM SET track_commit_timestamp = on, restart PostgreSQL, "+
			"or start with --access-history=false (no POST /v1/access/at)", errNoCommitTimestamps)
	}
	return nil
}
