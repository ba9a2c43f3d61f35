package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// TestChangelogIndexBackfill: changes recorded before migration 00016 are
// indexed by it, so a replay through the index finds them.
func TestChangelogIndexBackfill(t *testing.T) {
	ctx := context.Background()
	url := needServer(t).NewDatabase(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations"), goose.WithTableName("trellis_schema_migrations"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 13); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	for _, row := range []struct {
		at       time.Time
		updates  string
		baseline bool
	}{
		{at, `[{"op":"touch","resource":{"type":"document","id":"d1"},"relation":"viewer","subject":{"type":"user","id":"ann"}},
		       {"op":"touch","resource":{"type":"document","id":"d2"},"relation":"viewer","subject":{"type":"user","id":"bob"}}]`, true},
		{at.Add(time.Minute), `[{"op":"delete","resource":{"type":"document","id":"d1"},"relation":"viewer","subject":{"type":"user","id":"ann"}},
		       {"op":"touch","resource":{"type":"document","id":"d1"},"relation":"viewer","subject":{"type":"group","id":"eng","relation":"member"}}]`, false},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO relationship_changes (at, updates, baseline) VALUES ($1, $2, $3)`, row.at, row.updates, row.baseline); err != nil {
			t.Fatal(err)
		}
	}
	st := openMigrated(t, url)
	var got []store.RelationshipChange
	if err := st.Read(ctx, func(tx store.Tx) error {
		got, err = tx.ObjectChanges(ctx, []engine.ObjectRef{{Type: "document", ID: "d1"}}, at.Add(time.Hour))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0].Updates) != 1 || got[0].Updates[0].Relationship.Subject.Object.ID != "ann" || !got[0].Baseline ||
		len(got[1].Updates) != 2 || got[1].Updates[0].Operation != engine.OpDelete || got[1].Updates[1].Relationship.Subject.Relation != "member" {
		t.Fatalf("d1's changes recorded before the index: %+v", got)
	}
}
