package benchmarks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store/pgtest"
)

// BenchmarkPostgresQueriesPerCheck: what one uncached check costs SpiceDB's
// PostgreSQL datastore under the system schema, in datastore queries (SpiceDB's
// own spicedb_datastore_query_latency count, every query shape), relationships
// loaded and wall time. Each iteration asks about a user not asked about
// before, so neither Trellis's cache (not in front here) nor SpiceDB's
// dispatch cache can answer: the first check of a user after a deploy.
// allowed: a member of the region the document is in (platform -> reseller ->
// customer -> region); denied: a user of another tenant, which walks every
// branch of the organization's access up to the root. The model=minimal arms
// ask the same questions of the same relationships under a schema without
// Trellis's system features (suspension, role bindings, the platform): what
// those features cost a cold check.
func BenchmarkPostgresQueriesPerCheck(b *testing.B) {
	const tenants, users = 20, 2000
	srv := startPostgres(b)
	ctx := context.Background()
	var eng *engine.Embedded
	for _, arm := range []struct {
		name, schema string // schema: "" for the system schema with the benchmark app
		allowed      bool
	}{
		{"model=system/allowed", "", true}, {"model=system/denied", "", false},
		{"model=minimal/allowed", minimalSchema, true}, {"model=minimal/denied", minimalSchema, false},
	} {
		if arm.allowed { // a new model: one PostgreSQL datastore per process at a time (SpiceDB's metrics are global)
			if eng != nil {
				eng.Close()
			}
			if arm.schema == "" {
				eng, _ = postgresEngine(b, srv)
			} else {
				eng = postgresEngineWithSchema(b, srv, arm.schema)
			}
			load(b, eng, shape{tenants: tenants, users: users})
		}
		b.Run(arm.name, func(b *testing.B) {
			if b.N > tenants*users/2 {
				b.Skipf("only %d users not asked about yet", tenants*users/2)
			}
			offset := 0
			if !arm.allowed {
				offset = users / 2 // the other half of each tenant's users
			}
			queries0, loaded0 := datastoreCounters(b)
			i := 0
			start := time.Now()
			for b.Loop() {
				t, u := i%tenants, offset+i/tenants
				i++
				doc := t
				if !arm.allowed {
					doc = (t + 1) % tenants
				}
				res, err := eng.Check(ctx, engine.CheckRequest{
					Resource:   engine.ObjectRef{Type: "document", ID: fmt.Sprintf("d%d", doc)},
					Permission: "view",
					Subject:    engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("u%d_%d", t, u)}},
				})
				if err != nil {
					b.Fatal(err)
				}
				if res.Allowed() != arm.allowed {
					b.Fatalf("u%d_%d on d%d: allowed %v, want %v", t, u, doc, res.Allowed(), arm.allowed)
				}
			}
			wall := time.Since(start)
			queries1, loaded1 := datastoreCounters(b)
			if queries1 == queries0 {
				b.Fatal("no datastore query counted: does SpiceDB still export spicedb_datastore_query_latency?")
			}
			b.ReportMetric((queries1-queries0)/float64(i), "queries/check")
			b.ReportMetric((loaded1-loaded0)/float64(i), "rels-loaded/check")
			b.ReportMetric(float64(wall.Microseconds())/float64(i), "µs/check")
		})
	}
}

// minimalSchema is the system schema's organization cut to what the data set
// uses (administration inherited down the tree, membership) and the
// benchmark app's document: relationships the same, answers the same.
const minimalSchema = `definition user {}

definition platform {
	relation admin: user
	permission manage = admin
}

definition organization {
	relation platform: platform
	relation parent: organization
	relation admin: user
	relation member: user
	permission govern = admin + parent->govern + platform->manage
	permission access = member + govern
	permission manage = govern
}

definition document {
	relation org: organization
	relation viewer: user
	permission view = viewer + org->access
	permission edit = org->manage
}`

// postgresEngineWithSchema is postgresEngine with text as the whole schema
// (no system schema composed in).
func postgresEngineWithSchema(b *testing.B, srv *pgtest.Server, text string) *engine.Embedded {
	b.Helper()
	eng, _ := startPostgresEngine(b, srv)
	if _, err := eng.WriteSchema(context.Background(), text); err != nil {
		b.Fatal(err)
	}
	return eng
}

// datastoreCounters sums SpiceDB's datastore query count (every operation and
// query shape) and the relationships those queries loaded, from the default
// registry where SpiceDB registers them.
func datastoreCounters(b *testing.B) (queries, loaded float64) {
	b.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "spicedb_datastore_query_latency":
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "operation" && strings.Contains(l.GetValue(), "QueryRelationships") {
						queries += float64(m.GetHistogram().GetSampleCount())
					}
				}
			}
		case "spicedb_datastore_loaded_relationships_count":
			for _, m := range f.GetMetric() {
				loaded += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return queries, loaded
}
