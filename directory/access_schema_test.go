package directory

import (
	"context"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// The schema an access-at answer names is the version stored as applied at
// or before the time asked; before the first, the first; with none stored,
// the current schema.
func TestSchemaInForceAtAPastTime(t *testing.T) {
	ctx := t.Context()
	st := memory.New()
	s, err := New(Deps{Store: st, Graph: newGraphFake()}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.schemaText = func(_ context.Context) (string, error) { return "the current text", nil }
	h := s.schemaHistory
	if v, text, err := h.SchemaAt(ctx, time.Now()); err != nil || v != "current" || text != "the current text" {
		t.Fatalf("no versions stored: %q %q %v", v, text, err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := st.InTx(ctx, func(tx store.Tx) error {
		for i, text := range []string{"one", "two", "three"} {
			if err := tx.InsertSchemaVersion(ctx, store.SchemaVersion{Version: i + 1, Text: text, AppText: text, AppliedAt: t0.Add(time.Duration(i) * 24 * time.Hour), AppliedBy: "test"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at         time.Time
		want, text string
	}{
		{t0.Add(-time.Hour), "1", "one"},
		{t0, "1", "one"},
		{t0.Add(36 * time.Hour), "2", "two"},
		{t0.Add(48 * time.Hour), "3", "three"},
		{t0.Add(1000 * time.Hour), "3", "three"},
	} {
		if v, text, err := h.SchemaAt(ctx, c.at); err != nil || v != c.want || text != c.text {
			t.Errorf("at %s: %q %q %v, want %q %q", c.at, v, text, err, c.want, c.text)
		}
	}
}
