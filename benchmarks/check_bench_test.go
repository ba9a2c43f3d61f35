// Package benchmarks measures Trellis's check path. Run with `make bench`;
// results and the machine they came from go to RESULTS.md.
package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

const benchKey = "bench-key"

const app = `
definition document {
	relation org: organization
	relation viewer: user
	permission view = viewer + org->access
	permission edit = org->manage
}`

// fixture builds `tenants` trees of reseller -> customer -> region (3 levels under a
// platform), each region with `users` members and one document.
func fixture(b *testing.B, tenants, users int) *engine.Embedded {
	b.Helper()
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(ctx, app); err != nil {
		b.Fatal(err)
	}
	var batch []engine.RelationshipUpdate
	add := func(res, relation, sub string) {
		r, _ := engine.ParseObjectRef("r", res)
		s, _ := engine.ParseSubjectRef("s", sub)
		batch = append(batch, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: r, Relation: relation, Subject: s}})
		if len(batch) == engine.MaxUpdatesPerWrite {
			if _, err := eng.WriteRelationships(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	add("platform:p", "admin", "user:root")
	for t := 0; t < tenants; t++ {
		r, c, g := fmt.Sprintf("organization:r%d", t), fmt.Sprintf("organization:c%d", t), fmt.Sprintf("organization:g%d", t)
		add(r, "platform", "platform:p")
		add(r, "admin", fmt.Sprintf("user:radmin%d", t))
		add(c, "parent", r)
		add(g, "parent", c)
		add(c, "lineage", r) // what the directory writes beside parent
		add(g, "lineage", c)
		add(g, "lineage", r)
		add(fmt.Sprintf("document:d%d", t), "org", g)
		for u := 0; u < users; u++ {
			add(g, "member", fmt.Sprintf("user:u%d_%d", t, u))
		}
	}
	if len(batch) > 0 {
		if _, err := eng.WriteRelationships(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	return eng
}

// ceiling is the echo application of the HTTP ceiling: POST /v1/check answers a fixed {"allowed":true}.
func ceiling() *echo.Echo {
	e := echo.New()
	e.POST("/v1/check", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"allowed":true}`))
	})
	return e
}

// checkBodies are the JSON bodies of reqs as a client sends them to /v1/check.
func checkBodies(reqs []engine.CheckRequest) [][]byte {
	bodies := make([][]byte, len(reqs))
	for i, r := range reqs {
		bodies[i] = fmt.Appendf(nil, `{"resource":"%s","permission":"view","subject":"%s"}`, r.Resource, r.Subject)
	}
	return bodies
}

// BenchmarkEchoCeiling is an echo handler returning a fixed {"allowed":true}: the HTTP ceiling.
func BenchmarkEchoCeiling(b *testing.B) {
	srv := httptest.NewServer(ceiling())
	defer srv.Close()
	runHTTP(b, srv.URL, func(int) string { return `{"resource":"document:d0","permission":"view","subject":"user:u0_0"}` })
}

// BenchmarkCheckHTTP is a Trellis HTTP check (no result cache yet), embedded SpiceDB memdb.
func BenchmarkCheckHTTP(b *testing.B) {
	for _, tc := range []struct{ name, perm, subject string }{
		{"member", "view", "user:u%d_0"},
		{"reseller-admin", "edit", "user:radmin%d"},
		{"denied", "edit", "user:u%d_1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			eng := fixture(b, 100, 10)
			srv := httptest.NewServer(api.New(api.Deps{Engine: eng, AdminKey: benchKey}))
			defer srv.Close()
			runHTTP(b, srv.URL, func(i int) string {
				t := i % 100
				return fmt.Sprintf(`{"resource":"document:d%d","permission":"%s","subject":"%s"}`, t, tc.perm, fmt.Sprintf(tc.subject, t))
			})
		})
	}
}

// zipfChecks draws check requests over the fixture with Zipf-distributed keys.
func zipfChecks(n, tenants, users int) []engine.CheckRequest {
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, uint64(tenants*users-1))
	out := make([]engine.CheckRequest, n)
	for i := range out {
		k := int(z.Uint64())
		t, u := k%tenants, k/tenants
		out[i] = engine.CheckRequest{
			Resource: engine.ObjectRef{Type: "document", ID: fmt.Sprintf("d%d", t)}, Permission: "view",
			Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("u%d_%d", t, u)}},
		}
	}
	return out
}

func cachedEngine(b *testing.B, eng engine.Engine) *engine.Cached {
	c, err := engine.NewCached(context.Background(), eng, engine.CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// BenchmarkCheckInProcess calls Check directly: SpiceDB through the in-memory gRPC
// connection (uncached) and through the Trellis check cache (cached), Zipf keys.
func BenchmarkCheckInProcess(b *testing.B) {
	eng := fixture(b, 100, 10)
	reqs := zipfChecks(1<<14, 100, 10)
	ctx := context.Background()
	for _, arm := range []struct {
		name string
		c    engine.Checker
	}{{"uncached", eng}, {"cached", cachedEngine(b, eng)}} {
		b.Run(arm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := arm.c.Check(ctx, reqs[i&(len(reqs)-1)]); err != nil {
					b.Fatal(err)
				}
			}
			if c, ok := arm.c.(*engine.Cached); ok {
				st := c.Stats()
				b.ReportMetric(float64(st.Hits)/float64(max(1, st.Hits+st.Misses))*100, "hit%")
			}
		})
	}
}

// BenchmarkCheckHTTPCached is a Trellis HTTP check through the cache, Zipf keys,
// with no writes and with 1% of requests being relationship writes (a viewer
// added to a tenant's document, which invalidates that tenant's answers; the
// raw-write API refuses organization relationships, the directory's own).
func BenchmarkCheckHTTPCached(b *testing.B) {
	for _, writeEvery := range []int{0, 100} {
		name := "no-writes"
		if writeEvery > 0 {
			name = "1pct-writes"
		}
		b.Run(name, func(b *testing.B) {
			c, url, reqs := cachedServer(b)
			before := c.Stats()
			runHTTPMixed(b, url, func(i int) (string, string) {
				if writeEvery > 0 && i%writeEvery == writeEvery-1 {
					return "/v1/relationships/write", fmt.Sprintf(`{"updates":[{"operation":"touch","relationship":{"resource":"document:d%d","relation":"viewer","subject":"user:w%d"}}]}`, i%100, i)
				}
				r := reqs[i&(len(reqs)-1)]
				return "/v1/check", fmt.Sprintf(`{"resource":"%s","permission":"view","subject":"%s"}`, r.Resource, r.Subject)
			})
			reportHitRatio(b, c, before)
		})
	}
}

// BenchmarkAtLeastAsFreshAfterWrite: each op writes one relationship and checks it
// with {"atLeastAsFresh": writtenAt}, through HTTP and the cache.
func BenchmarkAtLeastAsFreshAfterWrite(b *testing.B) {
	eng := fixture(b, 100, 10)
	c := cachedEngine(b, eng)
	srv := httptest.NewServer(api.New(api.Deps{Engine: c, AdminKey: benchKey}))
	defer srv.Close()
	client := &http.Client{}
	post := func(path, body string) []byte {
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		return raw
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var w struct{ WrittenAt string }
		_ = json.Unmarshal(post("/v1/relationships/write", fmt.Sprintf(`{"updates":[{"operation":"touch","relationship":{"resource":"document:d%d","relation":"viewer","subject":"user:f%d"}}]}`, i%100, i)), &w)
		out := post("/v1/check", fmt.Sprintf(`{"resource":"document:d%d","permission":"view","subject":"user:f%d","consistency":{"atLeastAsFresh":%q}}`, i%100, i, w.WrittenAt))
		if !bytes.Contains(out, []byte(`"allowed":true`)) {
			b.Fatalf("write not visible: %s", out)
		}
	}
}

func runHTTP(b *testing.B, url string, body func(i int) string) {
	runHTTPMixed(b, url, func(i int) (string, string) { return "/v1/check", body(i) })
}

func runHTTPMixed(b *testing.B, url string, next func(i int) (path, body string)) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		path, body := next(i)
		req, _ := http.NewRequest("POST", url+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (path == "/v1/check" && !bytes.Contains(raw, []byte(`"allowed"`))) {
			b.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
	}
}

// BenchmarkCachedCheckTenantScaling: cached in-process check latency as the number
// of tenants grows (Zipf keys over 10 members per tenant; 1 write per 1,000 checks
// in a random tenant). A flat ns/op means per-tenant invalidation does not degrade
// with scale.
func BenchmarkCachedCheckTenantScaling(b *testing.B) {
	for _, tenants := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			c, reqs := warmCached(b, tenants)
			ctx := context.Background()
			before := c.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%1000 == 999 {
					scalingWrite(ctx, b, c, i, tenants)
					continue
				}
				if _, err := c.Check(ctx, reqs[i&(len(reqs)-1)]); err != nil {
					b.Fatal(err)
				}
			}
			reportHitRatio(b, c, before)
		})
	}
}

// scalingWrite is the write of the tenant-scaling workload: at operation i it
// adds a new member to organization g<i%tenants>.
func scalingWrite(ctx context.Context, b *testing.B, c *engine.Cached, i, tenants int) {
	rel := engine.Relationship{
		Resource: engine.ObjectRef{Type: "organization", ID: fmt.Sprintf("g%d", i%tenants)}, Relation: "member",
		Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("w%d", i)}},
	}
	if _, err := c.WriteRelationships(ctx, []engine.RelationshipUpdate{{Operation: engine.OpTouch, Relationship: rel}}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSaturation drives the echo ceiling and the cached Trellis HTTP check with
// 32 concurrent clients (b.SetParallelism(16) on 2 cores): ns/op is the inverse of
// throughput at saturation, so the two arms compare as throughputs.
func BenchmarkSaturation(b *testing.B) {
	b.Run("echo-ceiling", func(b *testing.B) {
		srv := httptest.NewServer(ceiling())
		defer srv.Close()
		reqs := zipfChecks(1<<14, 100, 10)
		runParallelHTTP(b, srv.URL, reqs)
	})
	b.Run("trellis-cached", func(b *testing.B) {
		c, url, reqs := cachedServer(b)
		before := c.Stats()
		runParallelHTTP(b, url, reqs)
		reportHitRatio(b, c, before)
	})
}

func runParallelHTTP(b *testing.B, url string, reqs []engine.CheckRequest) {
	bodies := checkBodies(reqs)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	runParallel(b, func(i int) error {
		req, _ := http.NewRequest("POST", url+"/v1/check", bytes.NewReader(bodies[i&(len(bodies)-1)]))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// runParallel runs op from 32 goroutines (16 per core on 2 cores), each call
// with the next request index, and fails the benchmark on the first error.
func runParallel(b *testing.B, op func(i int) error) {
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(int(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// warmCached builds the fixture with `tenants` tenants behind a check cache and
// answers the first 4,096 of its Zipf requests once, so figures are steady state.
func warmCached(b *testing.B, tenants int) (*engine.Cached, []engine.CheckRequest) {
	c := cachedEngine(b, fixture(b, tenants, 10))
	reqs := zipfChecks(1<<14, tenants, 10)
	for _, r := range reqs[:4096] {
		if _, err := c.Check(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	return c, reqs
}

// reportHitRatio reports the hit ratio since before as a benchmark metric.
func reportHitRatio(b *testing.B, c *engine.Cached, before engine.CacheStats) {
	st := c.Stats()
	hits, misses := st.Hits-before.Hits, st.Misses-before.Misses
	b.ReportMetric(float64(hits)/float64(max(1, hits+misses))*100, "hit%")
}

// BenchmarkCheckInProcessParallel: cached in-process checks from 32 goroutines,
// Zipf keys, warm — the Trellis side of the OpenFGA peer comparison (benchmarks/openfga).
func BenchmarkCheckInProcessParallel(b *testing.B) {
	c, reqs := warmCached(b, 100)
	ctx := context.Background()
	runParallel(b, func(i int) error {
		res, err := c.Check(ctx, reqs[i&(len(reqs)-1)])
		if err != nil || !res.Allowed() {
			return fmt.Errorf("check: %+v %v", res, err)
		}
		return nil
	})
}

// cachedServer serves the 100-tenant fixture over HTTP through a warm check cache
// and returns the cache, the base URL and the Zipf request stream.
func cachedServer(b *testing.B) (*engine.Cached, string, []engine.CheckRequest) {
	c, reqs := warmAll(b, fixture(b, 100, 10), 100, 10)
	srv := httptest.NewServer(api.New(api.Deps{Engine: c, AdminKey: benchKey}))
	b.Cleanup(srv.Close)
	return c, srv.URL, reqs
}

// BenchmarkCheckHandler is the server's own work per check, without a network or
// a client: the request goes straight into the echo application's ServeHTTP and
// the answer into a recorder. The ceiling's fixed answer against Trellis's
// cached check (warm, Zipf keys, no writes).
func BenchmarkCheckHandler(b *testing.B) {
	c, reqs := warmAll(b, fixture(b, 100, 10), 100, 10)
	arms := []struct {
		name string
		h    http.Handler
	}{{"echo-ceiling", ceiling()}, {"trellis-cached", api.New(api.Deps{Engine: c, AdminKey: benchKey})}}
	bodies := checkBodies(reqs)
	for _, arm := range arms {
		b.Run(arm.name, func(b *testing.B) {
			before := c.Stats()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(bodies[i&(len(bodies)-1)]))
				req.Header.Set("Authorization", "Bearer "+benchKey)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				arm.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			if arm.name == "trellis-cached" {
				reportHitRatio(b, c, before)
			}
		})
	}
}
