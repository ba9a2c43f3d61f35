package postgres

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationFiles are the schema's SQL migrations, NNNNN_name.sql, applied in
// version order. Add a file to change the schema; never edit an applied one.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationTable records applied versions; a Trellis name, so that the
// database can be shared with another goose user.
const migrationTable = "trellis_schema_migrations"

// migrateLock is the session advisory lock Migrate holds, so that replicas
// starting together migrate one at a time.
const migrateLock = writeLock + 1

// Migrate applies every migration the database at url has not applied yet, in
// order, each in its own transaction, under a session advisory lock (a second
// Migrate waits up to five minutes for the first). Running it again is a no-op.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("store/postgres: %w", err) // pgx redacts the password
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return translate("migrating", err)
	}
	return nil
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store/postgres: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrateLock), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("store/postgres: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(migrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true), // only these files, never Go migrations registered elsewhere
	)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: loading migrations: %w", err)
	}
	return p, nil
}

// latestMigration is the highest version among migrationFiles.
func latestMigration() int64 {
	names, _ := fs.Glob(migrationFiles, "migrations/*.sql") // the pattern is valid
	var latest int64
	for _, name := range names {
		v, err := goose.NumericComponent(path.Base(name))
		if err != nil {
			panic("store/postgres: migration " + name + " has no version: " + err.Error())
		}
		latest = max(latest, v)
	}
	return latest
}
