package store

import (
	"context"
	"time"
)

// SchemaVersion is one applied authorization schema, kept so that every node
// serves the same newest version and any past one can be read back.
type SchemaVersion struct {
	Version   int    // 1, 2, … with no gaps
	AppText   string // the provider's part, as submitted
	Text      string // the full composed schema written to the engine
	AppliedAt time.Time
	AppliedBy string // audit actor
	WrittenAt string // the engine's token for the schema write
}

// SchemaVersionRows are the schema version table.
type SchemaVersionRows interface {
	// LatestSchemaVersion is the newest version; ErrNotFound when none. In a
	// write transaction it also takes the schema lock (PostgreSQL: a
	// transaction advisory lock), so two appliers on any nodes check and
	// append one after the other.
	LatestSchemaVersion(ctx context.Context) (SchemaVersion, error)
	GetSchemaVersion(ctx context.Context, version int) (SchemaVersion, error)
	// ListSchemaVersions lists every version, oldest first.
	ListSchemaVersions(ctx context.Context) ([]SchemaVersion, error)
	// InsertSchemaVersion stores v; an existing v.Version is ErrConflict.
	InsertSchemaVersion(ctx context.Context, v SchemaVersion) error
}
