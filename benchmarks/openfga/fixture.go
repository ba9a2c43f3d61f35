// Package openfga is the peer arm of Trellis's check benchmarks: OpenFGA with a
// model equivalent to the benchmark's app schema and the same data and keys,
// either embedded as a library (memory datastore, its check query cache on;
// BenchmarkOpenFGACheck) or as its own HTTP server process (cmd/openfga-serve,
// driven by benchmarks/loadgen -target openfga). It is a separate module so
// that OpenFGA's dependencies never enter Trellis's build. Run the in-process
// arm with `make bench-peer` (benchmarks/peer.sh), which runs the Trellis arms
// in the same invocation.
package openfga

import (
	"context"
	"fmt"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/language/pkg/go/transformer"
)

// Model mirrors benchmarks/check_bench_test.go's app schema on the org tree:
// admins manage down the parent chain; members access their own org only.
const Model = `model
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

// The check query cache both arms run with: on, entries live this long, at most
// this many.
const (
	CheckCacheTTL   = 10 * time.Minute
	CheckCacheLimit = 1_000_000
)

// Writer is the part of OpenFGA's API that Seed writes through: a
// *server.Server in-process, or an adapter over a gRPC client.
type Writer interface {
	CreateStore(context.Context, *openfgav1.CreateStoreRequest) (*openfgav1.CreateStoreResponse, error)
	WriteAuthorizationModel(context.Context, *openfgav1.WriteAuthorizationModelRequest) (*openfgav1.WriteAuthorizationModelResponse, error)
	Write(context.Context, *openfgav1.WriteRequest) (*openfgav1.WriteResponse, error)
}

// Seed creates a store, writes Model to it and then, for each of tenants
// tenants t, the tree reseller r<t> -> customer c<t> -> region g<t> with
// user:radmin<t> admin of the reseller, users u<t>_0 .. u<t>_<users-1> members
// of the region, and document d<t> in the region. It returns the store's and
// the model's ids.
func Seed(ctx context.Context, w Writer, tenants, users int) (store, model string, err error) {
	st, err := w.CreateStore(ctx, &openfgav1.CreateStoreRequest{Name: "bench"})
	if err != nil {
		return "", "", fmt.Errorf("create store: %w", err)
	}
	m, err := transformer.TransformDSLToProto(Model)
	if err != nil {
		return "", "", fmt.Errorf("model: %w", err)
	}
	wm, err := w.WriteAuthorizationModel(ctx, &openfgav1.WriteAuthorizationModelRequest{
		StoreId: st.Id, TypeDefinitions: m.TypeDefinitions, SchemaVersion: m.SchemaVersion, Conditions: m.Conditions,
	})
	if err != nil {
		return "", "", fmt.Errorf("write model: %w", err)
	}
	store, model = st.Id, wm.AuthorizationModelId
	var batch []*openfgav1.TupleKey
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := w.Write(ctx, &openfgav1.WriteRequest{StoreId: store, AuthorizationModelId: model, Writes: &openfgav1.WriteRequestWrites{TupleKeys: batch}})
		batch = nil
		if err != nil {
			return fmt.Errorf("write tuples: %w", err)
		}
		return nil
	}
	add := func(obj, rel, user string) error {
		batch = append(batch, &openfgav1.TupleKey{Object: obj, Relation: rel, User: user})
		if len(batch) == 100 { // OpenFGA's default limit of tuples per write
			return flush()
		}
		return nil
	}
	for t := 0; t < tenants; t++ {
		r, c, g := fmt.Sprintf("organization:r%d", t), fmt.Sprintf("organization:c%d", t), fmt.Sprintf("organization:g%d", t)
		rels := [][3]string{{r, "admin", fmt.Sprintf("user:radmin%d", t)}, {c, "parent", r}, {g, "parent", c}, {fmt.Sprintf("document:d%d", t), "org", g}}
		for u := 0; u < users; u++ {
			rels = append(rels, [3]string{g, "member", fmt.Sprintf("user:u%d_%d", t, u)})
		}
		for _, x := range rels {
			if err := add(x[0], x[1], x[2]); err != nil {
				return "", "", err
			}
		}
	}
	if err := flush(); err != nil {
		return "", "", err
	}
	return store, model, nil
}
