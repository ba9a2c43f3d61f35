// Package benchmarks measures Trellis's check path. Run with `make bench`;
// results and the machine they came from go to RESULTS.md.
package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

// BenchmarkEchoCeiling is an echo handler returning a fixed {"allowed":true}: the HTTP ceiling.
func BenchmarkEchoCeiling(b *testing.B) {
	e := echo.New()
	e.POST("/v1/check", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"allowed":true}`))
	})
	srv := httptest.NewServer(e)
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

// BenchmarkCheckInProcess calls engine.Check directly (gRPC over an in-memory connection).
func BenchmarkCheckInProcess(b *testing.B) {
	eng := fixture(b, 100, 10)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t := i % 100
		_, err := eng.Check(ctx, engine.CheckRequest{
			Resource: engine.ObjectRef{Type: "document", ID: fmt.Sprintf("d%d", t)}, Permission: "view",
			Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("u%d_0", t)}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func runHTTP(b *testing.B, url string, body func(i int) string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req, _ := http.NewRequest("POST", url+"/v1/check", bytes.NewBufferString(body(i)))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(raw, []byte(`"allowed"`)) {
			b.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
	}
}
