package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// BenchmarkCheckHandlerKeys is the server's own work per cached check (as
// BenchmarkCheckHandler: ServeHTTP into a recorder, warm cache) by credential,
// in one run: the master admin key, an unbound provider API key with the
// check scope, and a check key bound to the tenant's top-level organization
// (every check also confined to its subtree). Tenant 0's ten members on its
// document, so every arm asks the same questions and the bound key may answer
// all of them.
//
//	go test -run '^$' -bench BenchmarkCheckHandlerKeys -benchmem ./benchmarks/
func BenchmarkCheckHandlerKeys(b *testing.B) {
	ctx := context.Background()
	c, _ := warmAll(b, fixture(b, 100, 10), 100, 10)
	st := memory.New()
	now := time.Now().UTC()
	if err := st.InTx(ctx, func(tx store.Tx) error {
		return tx.InsertOrg(ctx, store.Org{ID: "r0", Slug: "r0", Name: "Tenant 0", Status: store.StatusActive, CreatedAt: now, UpdatedAt: now})
	}); err != nil {
		b.Fatal(err)
	}
	dir, err := directory.New(directory.Deps{Store: st, Graph: c}, directory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	p := directory.Provider("bench")
	name := "app"
	unbound, err := dir.CreateProviderKey(ctx, p, directory.CreateProviderKey{Name: &name, Scopes: []string{"check"}})
	if err != nil {
		b.Fatal(err)
	}
	bound, err := dir.CreateProviderKey(ctx, p, directory.CreateProviderKey{Name: &name, Scopes: []string{"check"}, Organization: "r0"})
	if err != nil {
		b.Fatal(err)
	}
	h := api.New(api.Deps{Engine: c, AdminKey: benchKey, Directory: dir})
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"resource":"document:d0","permission":"view","subject":"user:u0_%d"}`, i%10)
	}
	for _, arm := range []struct{ name, key string }{
		{"admin-key", benchKey}, {"check-key", unbound.Secret}, {"check-key-bound", bound.Secret},
	} {
		b.Run(arm.name, func(b *testing.B) {
			before := c.Stats()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(bodies[i&(len(bodies)-1)]))
				req.Header.Set("Authorization", "Bearer "+arm.key)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			reportHitRatio(b, c, before)
		})
	}
}
