package benchmarks

// Cached check latency on SpiceDB's PostgreSQL datastore (embedded, in process)
// as the number of tenants grows, with memdb beside it, and once on a large
// data set (1,000 tenants, 100,000 users, groups, > 1 M relationships).
// Benchmarks only: nothing here runs under `go test` without -bench. They skip
// when PostgreSQL cannot be started (see store/pgtest).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/pgtest"
)

// maxSamples bounds the per-check timings kept for percentiles (32 MiB),
// preallocated so that recording them does not allocate.
const maxSamples = 1 << 22

// startPostgres starts a throwaway PostgreSQL for one benchmark, stopped at its
// cleanup, and skips the benchmark when that is not possible.
func startPostgres(b *testing.B) *pgtest.Server {
	b.Helper()
	srv, err := pgtest.StartServer()
	if errors.Is(err, pgtest.ErrNotInstalled) {
		b.Skipf("PostgreSQL unavailable, skipping %s: %v", b.Name(), err)
	}
	if err != nil {
		b.Skipf("PostgreSQL could not be started, skipping %s: %v", b.Name(), err)
	}
	b.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			b.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return srv
}

// postgresEngine starts embedded SpiceDB on a fresh, migrated database of srv,
// with the benchmark app schema. It returns the engine and the database URL.
func postgresEngine(b *testing.B, srv *pgtest.Server) (*engine.Embedded, string) {
	b.Helper()
	eng, uri := startPostgresEngine(b, srv)
	if _, err := schema.NewManager(eng).Bootstrap(context.Background(), app); err != nil {
		b.Fatal(err)
	}
	return eng, uri
}

// startPostgresEngine starts embedded SpiceDB on a fresh, migrated database of
// srv, without a schema, and returns it with the database URL.
func startPostgresEngine(b *testing.B, srv *pgtest.Server) (*engine.Embedded, string) {
	b.Helper()
	ctx := context.Background()
	uri := srv.NewDatabase(b)
	if err := engine.MigratePostgres(ctx, uri); err != nil {
		b.Fatal(err)
	}
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{Datastore: "postgres", DatastoreURI: uri})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	return eng, uri
}

// shape is the data set: fixture's trees (platform -> reseller -> customer ->
// region, one document per region) with `users` users per tenant. With groups > 0
// each tenant also has `groups` groups of its region, every user is in
// groupsPerUser of them, and only even-numbered users are direct region members
// (odd ones reach the document through their groups only).
type shape struct {
	tenants, users, groups, groupsPerUser int
	parentOnly                            bool // no lineage relationships (for schemas without the relation: BenchmarkPostgresQueriesPerCheck's other models)
}

// load writes s to eng in batches of engine.MaxUpdatesPerWrite from two writers
// and returns the number of relationships written. With groups == 0 it writes
// exactly what fixture writes.
func load(b *testing.B, eng engine.Engine, s shape) int {
	b.Helper()
	ctx := context.Background()
	batches := make(chan []engine.RelationshipUpdate, 4)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		written  int
		firstErr error
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				_, err := eng.WriteRelationships(ctx, batch)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					written += len(batch)
				}
				mu.Unlock()
			}
		}()
	}
	batch := make([]engine.RelationshipUpdate, 0, engine.MaxUpdatesPerWrite)
	add := func(res, relation, sub string) {
		r, err := engine.ParseObjectRef("r", res)
		if err != nil {
			b.Fatal(err)
		}
		sr, err := engine.ParseSubjectRef("s", sub)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: r, Relation: relation, Subject: sr}})
		if len(batch) == engine.MaxUpdatesPerWrite {
			batches <- batch
			batch = make([]engine.RelationshipUpdate, 0, engine.MaxUpdatesPerWrite)
		}
	}
	add("platform:p", "admin", "user:root")
	for t := 0; t < s.tenants; t++ {
		r, c, g := fmt.Sprintf("organization:r%d", t), fmt.Sprintf("organization:c%d", t), fmt.Sprintf("organization:g%d", t)
		add(r, "platform", "platform:p")
		add(r, "admin", fmt.Sprintf("user:radmin%d", t))
		add(c, "parent", r)
		add(g, "parent", c)
		if !s.parentOnly { // what the directory writes beside parent
			for _, l := range [][2]string{{r, r}, {c, c}, {c, r}, {g, g}, {g, c}, {g, r}} {
				add(l[0], "lineage", l[1])
			}
		}
		add(fmt.Sprintf("document:d%d", t), "org", g)
		for k := 0; k < s.groups; k++ {
			grp := fmt.Sprintf("group:t%d_%d", t, k)
			add(grp, "org", g)
			add(g, "member", grp+"#member")
		}
		for u := 0; u < s.users; u++ {
			user := fmt.Sprintf("user:u%d_%d", t, u)
			if s.groups == 0 || u%2 == 0 {
				add(g, "member", user)
			}
			for j := 0; j < s.groupsPerUser; j++ {
				add(fmt.Sprintf("group:t%d_%d", t, (u*7+j)%s.groups), "member", user)
			}
		}
	}
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return written
}

// countTuples counts the relationships stored in SpiceDB's PostgreSQL tables
// (none deleted yet, so every row is live), or -1 when it cannot.
func countTuples(uri string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, uri)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM relation_tuple").Scan(&n); err != nil {
		return -1
	}
	return n
}

// warmAll puts eng behind a check cache and answers every request of the Zipf
// stream (zipfChecks, over `users` members per tenant) once, so the measured
// window is steady state: its misses come from the writes' invalidations.
func warmAll(b *testing.B, eng engine.Engine, tenants, users int) (*engine.Cached, []engine.CheckRequest) {
	b.Helper()
	c := cachedEngine(b, eng)
	reqs := zipfChecks(1<<14, tenants, users)
	for chunk := range slices.Chunk(reqs, 100) { // bulk checks: a faster warm-up, same cache entries
		if _, err := c.CheckBulk(context.Background(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	return c, reqs
}

// measureCached runs the tenant-scaling workload of BenchmarkCachedCheckTenantScaling
// (Zipf checks, 1 write per 1,000 ops adding a member to a region of tenant
// i%tenants), times every check and reports p50/p95/p99 of the checks (writes
// excluded) and the hit ratio. It returns p99.
func measureCached(b *testing.B, c *engine.Cached, reqs []engine.CheckRequest, tenants int) time.Duration {
	ctx := context.Background()
	samples := make([]time.Duration, 0, maxSamples)
	before := c.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%1000 == 999 {
			scalingWrite(ctx, b, c, i, tenants)
			continue
		}
		start := time.Now()
		_, err := c.Check(ctx, reqs[i&(len(reqs)-1)])
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, d)
		}
	}
	b.StopTimer()
	reportHitRatio(b, c, before)
	slices.Sort(samples)
	pct := func(p float64) time.Duration {
		if len(samples) == 0 {
			return 0
		}
		return samples[min(len(samples)-1, int(p*float64(len(samples))))]
	}
	b.ReportMetric(float64(pct(0.50)), "p50-ns")
	b.ReportMetric(float64(pct(0.95)), "p95-ns")
	b.ReportMetric(float64(pct(0.99)), "p99-ns")
	b.ReportMetric(float64(len(samples)), "checks")
	return pct(0.99)
}

// BenchmarkPostgresTenantScaling: cached in-process check latency percentiles
// with 10 / 100 / 1,000 / 10,000 tenants (fixture's trees, 10 members each), on
// SpiceDB's PostgreSQL datastore and on memdb, after a full warm-up of the Zipf
// stream. Logs p99(10,000)/p99(10) per datastore (target ≤ 1.2).
func BenchmarkPostgresTenantScaling(b *testing.B) {
	srv := startPostgres(b)
	tenantCounts := []int{10, 100, 1000, 10000}
	for _, ds := range []string{"postgres", "memdb"} {
		p99 := map[int]time.Duration{}
		b.Run("ds="+ds, func(b *testing.B) {
			for _, tenants := range tenantCounts {
				b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
					setup := time.Now()
					var eng *engine.Embedded
					var rels int
					if ds == "postgres" {
						var uri string
						eng, uri = postgresEngine(b, srv)
						load(b, eng, shape{tenants: tenants, users: 10})
						rels = countTuples(uri)
					} else {
						eng = fixture(b, tenants, 10)
						rels = 1 + tenants*(5+10) // what fixture writes
					}
					loaded := time.Since(setup)
					c, reqs := warmAll(b, eng, tenants, 10)
					b.Logf("%s, %d tenants: %d relationships, loaded in %v, cache built and warmed in %v",
						ds, tenants, rels, loaded.Round(time.Millisecond), (time.Since(setup) - loaded).Round(time.Millisecond))
					p99[tenants] = measureCached(b, c, reqs, tenants)
					// the largest arm reports p99 against the smallest's (a parent
					// benchmark's own log is not printed)
					if lo := p99[tenantCounts[0]]; tenants == tenantCounts[len(tenantCounts)-1] && lo > 0 {
						ratio := float64(p99[tenants]) / float64(lo)
						b.ReportMetric(ratio, "p99/p99(10)")
						b.Logf("%s: p99 %v at %d tenants, %v at %d tenants: ratio %.2f (target ≤ 1.2)",
							ds, lo, tenantCounts[0], p99[tenants], tenants, ratio)
					}
				})
			}
		})
	}
}

// BenchmarkPostgresLargeData: the same measurement once on a large data set on
// PostgreSQL: 1,000 tenants, 100 users each (100,000 users), 20 groups per
// tenant with every user in 10 of them (half the users reach their document
// only through groups): 1,095,001 relationships.
func BenchmarkPostgresLargeData(b *testing.B) {
	srv := startPostgres(b)
	s := shape{tenants: 1000, users: 100, groups: 20, groupsPerUser: 10}
	b.Run(fmt.Sprintf("ds=postgres/tenants=%d/users=%d", s.tenants, s.tenants*s.users), func(b *testing.B) {
		setup := time.Now()
		eng, uri := postgresEngine(b, srv)
		written := load(b, eng, s)
		loaded := time.Since(setup)
		stored := countTuples(uri)
		c, reqs := warmAll(b, eng, s.tenants, s.users)
		b.Logf("postgres large data: %d relationships written, %d stored; loaded in %v, cache built (tenancy learned) and warmed in %v",
			written, stored, loaded.Round(time.Millisecond), (time.Since(setup) - loaded).Round(time.Millisecond))
		measureCached(b, c, reqs, s.tenants) // resets the timer, which drops earlier metrics
		b.ReportMetric(float64(stored), "relationships")
	})
}
