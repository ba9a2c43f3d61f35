package store

import (
	"context"
	"slices"
)

type tenantsKey struct{}

// WithTenants marks ctx's write transactions as confined to the given
// tenants (top-level organization ids): they read and write only rows, audit
// chains and relationships of those organization trees, besides reading
// shared rows (users) that confined transactions never write. A store may
// then run them in parallel with confined transactions of other tenants
// (PostgreSQL: a per-tenant lock under a shared database lock) instead of one
// at a time. Unconfined transactions still run alone. Audit positions and
// outbox seqs keep growing in commit order either way.
func WithTenants(ctx context.Context, tenants ...string) context.Context {
	t := slices.Clone(tenants)
	slices.Sort(t)
	return context.WithValue(ctx, tenantsKey{}, slices.Compact(t))
}

// Tenants is what WithTenants put in ctx, sorted; nil when unconfined.
func Tenants(ctx context.Context) []string {
	t, _ := ctx.Value(tenantsKey{}).([]string)
	return t
}

// Unconfined drops WithTenants from ctx: its transactions run alone.
func Unconfined(ctx context.Context) context.Context {
	return context.WithValue(ctx, tenantsKey{}, []string(nil))
}
