package benchmarks

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// BenchmarkPostgresColdStart: the first checks a process answers after a
// restart on SpiceDB's PostgreSQL datastore (1,000 tenants × 50 members),
// a Zipf stream of 65,536 checks from 32 clients, with the cache cold and with
// the cache pre-warmed from the previous process's questions
// (Cached.HotRequests → Prewarm, what --cache-warm-file does). Each arm gets a
// new embedded SpiceDB (its dispatch cache empty too) on the same database;
// the cold arm runs both before and after the pre-warmed one, so PostgreSQL's
// own buffers favour neither. Reports the stream's wall time, p50/p99 and hit
// ratio, and the pre-warm's own time, with one and with four bulk calls in flight.
func BenchmarkPostgresColdStart(b *testing.B) {
	const tenants, users, clients = 1000, 50, 32
	srv := startPostgres(b)
	eng, uri := postgresEngine(b, srv)
	start := time.Now()
	n := load(b, eng, shape{tenants: tenants, users: users})
	b.Logf("loaded %d relationships in %v", n, time.Since(start).Round(time.Millisecond))
	eng.Close() // one PostgreSQL datastore per process at a time (its metrics are registered globally)
	stream := zipfChecks(1<<16, tenants, users)
	var hot []engine.CheckRequest
	fresh := func(b *testing.B) (*engine.Cached, func()) {
		e, err := engine.StartEmbedded(context.Background(), engine.EmbeddedConfig{Datastore: "postgres", DatastoreURI: uri})
		if err != nil {
			b.Fatal(err)
		}
		c, err := engine.NewCached(context.Background(), e, engine.CacheConfig{})
		if err != nil {
			b.Fatal(err)
		}
		return c, func() { c.Close(); e.Close() }
	}
	run := func(b *testing.B, c *engine.Cached) {
		before := c.Stats()
		lat := make([][]time.Duration, clients)
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(stream); i += clients {
					s := time.Now()
					if _, err := c.Check(context.Background(), stream[i]); err != nil {
						b.Error(err)
						return
					}
					lat[w] = append(lat[w], time.Since(s))
				}
			}()
		}
		wg.Wait()
		wall := time.Since(t0)
		all := slices.Concat(lat...)
		slices.Sort(all)
		b.ReportMetric(float64(wall.Milliseconds()), "stream-ms")
		b.ReportMetric(float64(len(all))/wall.Seconds(), "checks/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		reportHitRatio(b, c, before)
	}
	arm := func(name string, inFlight int) { // inFlight 0: no pre-warm
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				c, stop := fresh(b)
				if inFlight > 0 {
					t0 := time.Now()
					warmed, err := c.Prewarm(context.Background(), hot, inFlight)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(time.Since(t0).Milliseconds()), "prewarm-ms")
					b.ReportMetric(float64(warmed), "prewarmed")
				}
				run(b, c)
				if hot == nil {
					hot = c.HotRequests(100_000)
				}
				stop()
			}
		})
	}
	arm("start=cold", 0)
	arm("start=prewarmed/in-flight=1", 1)
	arm("start=prewarmed/in-flight=4", 4)
	arm("start=cold-again", 0)
	b.Logf("%d questions carried over", len(hot))
}
