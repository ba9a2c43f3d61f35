package directory

import (
	"testing"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// systemEngine starts an embedded SpiceDB (memdb) holding the system schema,
// closed when the test ends.
func systemEngine(t *testing.T) *engine.Embedded {
	t.Helper()
	eng, err := engine.StartEmbedded(t.Context(), engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	return eng
}
