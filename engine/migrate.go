package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/authzed/spicedb/pkg/datastore/migration"
)

// MigratePostgres brings SpiceDB's PostgreSQL datastore schema at uri to the
// newest revision (SpiceDB's own migrations; re-running is a no-op). `trellis
// migrate` runs it before `serve --datastore postgres`.
func MigratePostgres(ctx context.Context, uri string) error {
	err := migration.Run(ctx, &migration.Config{
		DatastoreEngine: "postgres", DatastoreURI: uri,
		Timeout: time.Hour, BatchSize: 1000, ExtraConfig: map[string]string{},
	}, "head")
	if err != nil {
		return fmt.Errorf("engine: SpiceDB postgres migrations: %w", err)
	}
	return nil
}
