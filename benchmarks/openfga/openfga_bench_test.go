// Package openfga is the peer arm of Trellis's check benchmarks: OpenFGA
// embedded as a library (memory datastore, its check query cache on) with a
// model equivalent to the benchmark's app schema and the same data and keys.
// It is a separate module so that OpenFGA's dependencies never enter Trellis's
// build. Run with `make bench-peer` (benchmarks/peer.sh), which runs the Trellis
// arms in the same invocation.
package openfga

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/language/pkg/go/transformer"
	"github.com/openfga/openfga/pkg/server"
	"github.com/openfga/openfga/pkg/storage/memory"
)

// model mirrors benchmarks/check_bench_test.go's app schema on the org tree:
// admins manage down the parent chain; members access their own org only.
const model = `model
  schema 1.1
type user
type organization
  relations
    define parent: [organization]
    define admin: [user]
    define member: [user]
    define manage: admin or manage from parent
    define access: member or manage
type document
  relations
    define org: [organization]
    define viewer: [user]
    define view: viewer or access from org
    define edit: manage from org
`

const tenants, users = 100, 10

type fixture struct {
	s       *server.Server
	store   string
	modelID string
}

func newFixture(b *testing.B) *fixture {
	b.Helper()
	ctx := context.Background()
	ds := memory.New()
	s := server.MustNewServerWithOpts(
		server.WithDatastore(ds),
		server.WithCheckQueryCacheEnabled(true),
		server.WithCheckQueryCacheTTL(10*time.Minute),
		server.WithCheckCacheLimit(1_000_000),
	)
	b.Cleanup(func() { s.Close(); ds.Close() })
	st, err := s.CreateStore(ctx, &openfgav1.CreateStoreRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	m, err := transformer.TransformDSLToProto(model)
	if err != nil {
		b.Fatal(err)
	}
	wm, err := s.WriteAuthorizationModel(ctx, &openfgav1.WriteAuthorizationModelRequest{
		StoreId: st.Id, TypeDefinitions: m.TypeDefinitions, SchemaVersion: m.SchemaVersion, Conditions: m.Conditions,
	})
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{s: s, store: st.Id, modelID: wm.AuthorizationModelId}
	var batch []*openfgav1.TupleKey
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := s.Write(ctx, &openfgav1.WriteRequest{StoreId: st.Id, AuthorizationModelId: f.modelID, Writes: &openfgav1.WriteRequestWrites{TupleKeys: batch}}); err != nil {
			b.Fatal(err)
		}
		batch = nil
	}
	add := func(obj, rel, user string) {
		batch = append(batch, &openfgav1.TupleKey{Object: obj, Relation: rel, User: user})
		if len(batch) == 100 {
			flush()
		}
	}
	for t := 0; t < tenants; t++ {
		r, c, g := fmt.Sprintf("organization:r%d", t), fmt.Sprintf("organization:c%d", t), fmt.Sprintf("organization:g%d", t)
		add(r, "admin", fmt.Sprintf("user:radmin%d", t))
		add(c, "parent", r)
		add(g, "parent", c)
		add(fmt.Sprintf("document:d%d", t), "org", g)
		for u := 0; u < users; u++ {
			add(g, "member", fmt.Sprintf("user:u%d_%d", t, u))
		}
	}
	flush()
	return f
}

// zipfKeys matches benchmarks/check_bench_test.go's zipfChecks (same seed and mapping).
func zipfKeys(n int) []*openfgav1.CheckRequestTupleKey {
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, uint64(tenants*users-1))
	out := make([]*openfgav1.CheckRequestTupleKey, n)
	for i := range out {
		k := int(z.Uint64())
		t, u := k%tenants, k/tenants
		out[i] = &openfgav1.CheckRequestTupleKey{Object: fmt.Sprintf("document:d%d", t), Relation: "view", User: fmt.Sprintf("user:u%d_%d", t, u)}
	}
	return out
}

func (f *fixture) check(ctx context.Context, k *openfgav1.CheckRequestTupleKey) error {
	resp, err := f.s.Check(ctx, &openfgav1.CheckRequest{StoreId: f.store, AuthorizationModelId: f.modelID, TupleKey: k})
	if err != nil {
		return err
	}
	if !resp.Allowed {
		return fmt.Errorf("%v not allowed", k)
	}
	return nil
}

// BenchmarkOpenFGACheck: sequential and parallel (32 goroutines) checks, Zipf keys, warm.
func BenchmarkOpenFGACheck(b *testing.B) {
	f := newFixture(b)
	keys := zipfKeys(1 << 14)
	ctx := context.Background()
	for _, k := range keys[:4096] {
		if err := f.check(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := f.check(ctx, keys[i&(len(keys)-1)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(16)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := f.check(ctx, keys[int(next.Add(1))&(len(keys)-1)]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
