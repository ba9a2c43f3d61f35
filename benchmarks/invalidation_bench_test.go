package benchmarks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// BenchmarkCachedCheckDocumentWrites: few tenants (20), many documents each
// (50, every one viewed through its organization or a direct viewer grant),
// Zipf checks over (document, member) pairs, 1 % of operations a raw viewer
// grant on a random document — the write mix where a whole-tenant epoch bump
// empties most of the cache (issue 19: SpiceDB's own server beat Trellis
// there). Nothing in the schema may hold a relationship to a document, so a
// write to one can change only that document's answers (ADR 0004, sealed
// types): arm invalidate=object. Arm invalidate=tenant runs the same
// operations with one more definition that can point at documents, which
// unseals them: every write bumps its tenant as before. Reports hit ratio.
func BenchmarkCachedCheckDocumentWrites(b *testing.B) {
	const tenants, docs, users = 20, 50, 50
	for _, arm := range []struct{ name, extra string }{
		{"invalidate=object", ""},
		{"invalidate=tenant", "\ndefinition pin {\n\trelation doc: document\n}"},
	} {
		b.Run(arm.name, func(b *testing.B) {
			ctx := context.Background()
			eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { eng.Close() })
			if _, err := schema.NewManager(eng).Bootstrap(ctx, app+arm.extra); err != nil {
				b.Fatal(err)
			}
			var ups []engine.RelationshipUpdate
			add := func(res, rel, sub string) {
				r, _ := engine.ParseObjectRef("r", res)
				s, _ := engine.ParseSubjectRef("s", sub)
				ups = append(ups, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: r, Relation: rel, Subject: s}})
			}
			for t := range tenants {
				add(fmt.Sprintf("organization:c%d", t), "parent", fmt.Sprintf("organization:r%d", t))
				add(fmt.Sprintf("organization:c%d", t), "lineage", fmt.Sprintf("organization:r%d", t))
				for u := range users / 2 { // half the users are members; the others see only what they are granted
					add(fmt.Sprintf("organization:c%d", t), "member", fmt.Sprintf("user:u%d_%d", t, u))
				}
				for d := range docs {
					add(fmt.Sprintf("document:t%d_%d", t, d), "org", fmt.Sprintf("organization:c%d", t))
				}
			}
			if _, err := eng.WriteRelationships(ctx, ups); err != nil {
				b.Fatal(err)
			}
			c := cachedEngine(b, eng)
			r := rand.New(rand.NewPCG(5, 6))
			z := rand.NewZipf(r, 1.1, 1, uint64(tenants*docs*users-1))
			reqs := make([]engine.CheckRequest, 1<<14)
			for i := range reqs {
				k := int(z.Uint64())
				t, d, u := k%tenants, (k/tenants)%docs, k/(tenants*docs)
				reqs[i] = engine.CheckRequest{
					Resource: engine.ObjectRef{Type: "document", ID: fmt.Sprintf("t%d_%d", t, d)}, Permission: "view",
					Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("u%d_%d", t, u)}},
				}
			}
			for _, q := range reqs { // warm
				if _, err := c.Check(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
			before := c.Stats()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%100 == 99 {
					t, d := r.IntN(tenants), r.IntN(docs)
					rel := engine.Relationship{Resource: engine.ObjectRef{Type: "document", ID: fmt.Sprintf("t%d_%d", t, d)}, Relation: "viewer",
						Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: fmt.Sprintf("u%d_%d", t, users/2+r.IntN(users/2))}}}
					if _, err := c.WriteRelationships(ctx, []engine.RelationshipUpdate{{Operation: engine.OpTouch, Relationship: rel}}); err != nil {
						b.Fatal(err)
					}
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
