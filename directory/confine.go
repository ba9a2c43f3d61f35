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
// Confined today: membership put and remove, group member add and remove,
// sub-organization create (ref = its parent), custom role create, update and
// delete (a role is resolved on its organization's path and bound in its
// subtree only), and service account create and update. Moves, deletes of
// organizations and service accounts (a subject filter may reach relationships
// anywhere), user creation, invitations (accepting one may create a user),
// delegations and impersonations (they span tenants) and everything else that
// may span tenants or write shared rows run unconfined.
func (s *Service) runInTenant(ctx context.Context, p Principal, action, ref string, fn func(tx store.Tx, o *op) error) error {
	tenant, ok := s.tenants.Get(ref)
	if !ok {
		var err error
		if tenant, err = s.tenantOf(ctx, ref); err != nil || tenant == "" {
			return s.run(ctx, p, action, fn)
		}
	}
	err := s.run(store.WithTenants(ctx, tenant), p, action, func(tx store.Tx, o *op) error {
		org, now, err := orgAndTenant(ctx, tx, ref, s.cfg.MaxDepth)
		if err != nil {
			return err
		}
		if now != tenant {
			return errTenantMoved
		}
		// read under the tenant's lock: no other writer changes it before commit
		o.ref, o.refOrg = ref, &org
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
	_, tenant, err := orgAndTenant(ctx, tx, ref, maxDepth)
	return tenant, err
}

// orgAndTenant is the organization ref names and the id of the top-level
// organization above (or equal to) it.
func orgAndTenant(ctx context.Context, tx store.Tx, ref string, maxDepth int) (store.Org, string, error) {
	org, err := resolveOrg(ctx, tx, ref)
	if err != nil {
		return store.Org{}, "", err
	}
	cur := org
	for range maxDepth + 1 {
		if cur.Parent == "" {
			return org, cur.ID, nil
		}
		if cur, err = tx.GetOrg(ctx, cur.Parent); err != nil {
			return store.Org{}, "", err
		}
	}
	return org, "", nil // deeper than any tree may be: let the operation run alone
}

// orgForOp is orgFor for an operation runInTenant confined: the organization
// it resolved under the tenant's lock is not read again.
func (s *Service) orgForOp(ctx context.Context, tx store.Tx, o *op, ref, perm string) (store.Org, error) {
	if o.refOrg == nil || o.ref != ref {
		return s.orgFor(ctx, tx, o.p, ref, perm)
	}
	return *o.refOrg, s.authorize(ctx, tx, o.p, *o.refOrg, perm)
}
