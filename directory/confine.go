package directory

import (
	"context"
	"errors"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/trellis-iam/trellis/store"
)

// tenantHints remembers the tenant of organization refs an operation was
// confined to, so the next one skips the snapshot read. A hint is only a
// guess: it is checked under the tenant's lock like a fresh read, and a wrong
// one (the organization moved) costs a run unconfined and is forgotten.
type tenantHints = lru.Cache[string, string]

func newTenantHints() *tenantHints {
	c, err := lru.New[string, string](100_000)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return c
}

// errTenantMoved: the organization an operation was confined to left the
// tenant it was in when the operation began (a move committed in between).
var errTenantMoved = errors.New("directory: the organization moved to another tenant")

// runInTenant is run for an operation confined to the tenant (top-level
// organization) of the organization ref names: it writes rows, audit chains
// and relationships of that tenant's tree only, and never a shared row. Such
// operations of different tenants run in parallel in stores that can
// (store.WithTenants); those of one tenant one at a time. The tenant is read
// from a snapshot first and checked again under the tenant's lock, where no
// move can change it; if it changed (or ref cannot be resolved), the
// operation runs unconfined, alone, as every other operation does.
//
// Confined today: membership put and remove, group member add and remove, and
// sub-organization create (ref = its parent). Moves, deletes, user creation
// and everything else that may span tenants or write shared rows run unconfined.
func (s *Service) runInTenant(ctx context.Context, p Principal, action, ref string, fn func(tx store.Tx, o *op) error) error {
	tenant, ok := s.tenants.Get(ref)
	if !ok {
		var err error
		if tenant, err = s.tenantOf(ctx, ref); err != nil || tenant == "" {
			return s.run(ctx, p, action, fn)
		}
	}
	err := s.run(store.WithTenants(ctx, tenant), p, action, func(tx store.Tx, o *op) error {
		now, err := tenantIn(ctx, tx, ref, s.cfg.MaxDepth)
		if err != nil {
			return err
		}
		if now != tenant {
			return errTenantMoved
		}
		return fn(tx, o)
	})
	if errors.Is(err, errTenantMoved) {
		s.tenants.Remove(ref)
		return s.run(store.Unconfined(ctx), p, action, fn)
	}
	if err == nil {
		s.tenants.Add(ref, tenant)
	}
	return err
}

// tenantOf reads the tenant of the organization ref names from a snapshot; ""
// when there is none (the operation then reports it, unconfined).
func (s *Service) tenantOf(ctx context.Context, ref string) (string, error) {
	var tenant string
	err := s.read(ctx, func(tx store.Tx) error {
		var err error
		tenant, err = tenantIn(ctx, tx, ref, s.cfg.MaxDepth)
		return err
	})
	return tenant, err
}

// tenantIn is the id of the top-level organization above (or equal to) ref.
func tenantIn(ctx context.Context, tx store.Tx, ref string, maxDepth int) (string, error) {
	org, err := resolveOrg(ctx, tx, ref)
	if err != nil {
		return "", err
	}
	for range maxDepth + 1 {
		if org.Parent == "" {
			return org.ID, nil
		}
		if org, err = tx.GetOrg(ctx, org.Parent); err != nil {
			return "", err
		}
	}
	return "", nil // deeper than any tree may be: let the operation run alone
}
