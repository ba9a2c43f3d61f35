package engine_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	. "github.com/trellis-iam/trellis/engine"
)

func TestMemdbGuardWarnsPastItsThreshold(t *testing.T) {
	ctx := context.Background()
	eng, _ := startPair(t)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	g := NewMemdbGuard(eng, 3, slog.New(slog.NewTextHandler(&logs, nil)), reg)

	base, err := eng.RelationshipCount(ctx) // the schema bootstrap may store none; count from here
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	if base <= 3 && len(g.Warnings()) != 0 {
		t.Fatalf("warned at %d relationships: %v", base, g.Warnings())
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		write(t, eng, OpTouch, mkRel("document:"+id, "viewer", "user:u"))
	}
	got, err := eng.RelationshipCount(ctx)
	if err != nil || got != base+4 {
		t.Fatalf("count = %d, %v; want %d", got, err, base+4)
	}
	if err := g.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	w := g.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "memdb holds") {
		t.Fatalf("warnings = %q", w)
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Count(logs.String(), "level=WARN") != 1 {
		t.Fatalf("want one warning in the log, got:\n%s", logs.String())
	}
	if err := g.Measure(ctx); err != nil { // still over: not logged again
		t.Fatal(err)
	}
	if strings.Count(logs.String(), "level=WARN") != 1 {
		t.Fatalf("warned twice for one crossing:\n%s", logs.String())
	}
	want := strings.NewReader("# HELP trellis_memdb_relationships Relationships held by the embedded in-memory datastore (memdb), counted periodically.\n# TYPE trellis_memdb_relationships gauge\ntrellis_memdb_relationships " + strconv.FormatUint(got, 10) + "\n")
	if err := testutil.GatherAndCompare(reg, want, "trellis_memdb_relationships"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		write(t, eng, OpDelete, mkRel("document:"+id, "viewer", "user:u"))
	}
	if err := g.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	if base <= 3 && len(g.Warnings()) != 0 {
		t.Fatalf("still warning after the deletes: %v", g.Warnings())
	}
}

func TestRelationshipCountOnlyOnMemdb(t *testing.T) {
	var e Embedded
	if _, err := e.RelationshipCount(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}
