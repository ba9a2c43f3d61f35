package benchmarks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/trellis-iam/trellis/engine"
)

// BenchmarkMemdbUncachedCheck measures one uncached check against SpiceDB's
// in-memory datastore as the data grows, with the shape of each answer fixed:
// a region's member viewing its region's document (two relationships read).
// SpiceDB's memdb reader walks every relationship of the filtered definition
// and relation (docs/upstream/memdb-resource-id-index.md), so the cost grows
// with the whole graph rather than with what the check reads.
func BenchmarkMemdbUncachedCheck(b *testing.B) {
	const users = 50
	for _, tenants := range []int{300, 1000, 3000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			eng := fixture(b, tenants, users)
			ctx := context.Background()
			n, err := eng.RelationshipCount(ctx)
			if err != nil {
				b.Fatal(err)
			}
			// every (tenant, user) pair once, in a shuffled order: no answer
			// repeats, so SpiceDB's dispatch cache cannot serve one
			pairs := rand.New(rand.NewPCG(1, 2)).Perm(tenants * users)
			req := func(i int) engine.CheckRequest {
				p := pairs[i%len(pairs)]
				res, _ := engine.ParseObjectRef("r", fmt.Sprintf("document:d%d", p%tenants))
				sub, _ := engine.ParseSubjectRef("s", fmt.Sprintf("user:u%d_%d", p%tenants, p/tenants))
				return engine.CheckRequest{Resource: res, Permission: "view", Subject: sub}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := req(i)
				res, err := eng.Check(ctx, r)
				if err != nil {
					b.Fatal(err)
				}
				if !res.Allowed() {
					b.Fatalf("%+v denied", r)
				}
			}
			b.ReportMetric(float64(n), "relationships")
		})
	}
}
