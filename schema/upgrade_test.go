package schema_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/schema/schematest"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// A deployment whose stored schema carries an older system schema gets this
// release's at start, as a new version by "system" with its app part kept;
// a later start changes nothing; a stored system schema newer than this
// release (one with a relation it lacks) is kept as it is.
func TestBootstrapUpgradesAnOlderSystemSchema(t *testing.T) {
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	st := memory.New()
	app := "definition document {\n\trelation org: organization\n\tpermission view = org->access\n}"
	stored := func(version int, text string) {
		t.Helper()
		if _, err := eng.WriteSchema(ctx, text); err != nil {
			t.Fatal(err)
		}
		if err := st.InTx(ctx, func(tx store.Tx) error {
			return tx.InsertSchemaVersion(ctx, store.SchemaVersion{Version: version, Text: text, AppText: app, AppliedAt: time.Now(), AppliedBy: "test"})
		}); err != nil {
			t.Fatal(err)
		}
	}
	stored(1, schematest.BeforeLineage()+"\n"+app)

	v, err := schema.NewManager(eng, st).Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := schema.Compose(app)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 2 || v.AppliedBy != "system" || v.Text != want.Text || v.AppText != app {
		t.Fatalf("after start: version %d by %q, app %q, text is this release's: %v", v.Version, v.AppliedBy, v.AppText, v.Text == want.Text)
	}
	live, err := eng.ReadSchema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(live, "lineage") {
		t.Fatal("the engine's schema has no lineage relation after the upgrade")
	}
	if v, err := schema.NewManager(eng, st).Bootstrap(ctx, ""); err != nil || v.Version != 2 {
		t.Fatalf("a second start: version %d (%v), want 2 again", v.Version, err)
	}

	newer := strings.Replace(want.Text, "\trelation lineage: organization\n", "\trelation lineage: organization\n\trelation steward: user\n", 1)
	stored(3, newer)
	if v, err := schema.NewManager(eng, st).Bootstrap(ctx, ""); err != nil || v.Version != 3 || v.Text != newer {
		t.Fatalf("a stored system schema newer than this release: version %d (%v), kept %v; want version 3 kept", v.Version, err, v.Text == newer)
	}
}

// A second node without a schema store (schema.NewManager(eng) on an engine
// that already holds the composed schema, as benchmarks/writes' second node
// does) reads the app part back and keeps it: the system caveat is not
// composed in twice.
func TestBootstrapWithoutAStoreOnAComposedSchema(t *testing.T) {
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	app := "caveat weekday(day string) {\n\tday != \"sunday\"\n}\n\ndefinition document {\n\trelation org: organization\n\trelation viewer: user with weekday\n\tpermission view = viewer + org->access\n}"
	first, err := schema.NewManager(eng).Bootstrap(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	second, err := schema.NewManager(eng).Bootstrap(ctx, "")
	if err != nil {
		t.Fatalf("second node: %v", err)
	}
	if second.Text != first.Text || !strings.Contains(second.AppText, "caveat weekday") || strings.Contains(second.AppText, "impersonation_scope") {
		t.Fatalf("second node's schema: same text %v, app part %q", second.Text == first.Text, second.AppText)
	}
}
