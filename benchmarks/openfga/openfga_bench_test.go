package openfga

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/openfga/pkg/server"
	"github.com/openfga/openfga/pkg/storage/memory"
)

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
		server.WithCheckQueryCacheTTL(CheckCacheTTL),
		server.WithCheckCacheLimit(CheckCacheLimit),
	)
	b.Cleanup(func() { s.Close(); ds.Close() })
	store, modelID, err := Seed(ctx, s, tenants, users)
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{s: s, store: store, modelID: modelID}
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
