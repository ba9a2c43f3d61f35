package engine

import "context"

// Hooks for the external tests (package engine_test).

// PendingExpiries is the number of expiries c has scheduled and not yet fired.
func PendingExpiries(c *Cached) int { return c.expiry.size() }

// Relearn rebuilds c's tenancy index from the engine, as after a schema change or a watch resync.
func Relearn(ctx context.Context, c *Cached) error { return c.learn(ctx) }
