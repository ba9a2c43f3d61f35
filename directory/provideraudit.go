package directory

import (
	"context"

	"github.com/trellis-iam/trellis/store"
)

// RecordProviderEvent appends one event to the provider's (platform) chain
// for a change made outside the directory: a raw relationship write or a
// schema change (ADR 0014). The change is already committed by the engine:
// the caller reports a failure here as such.
func (s *Service) RecordProviderEvent(ctx context.Context, p Principal, action, target string, details map[string]any) error {
	return s.store.InTx(ctx, func(tx store.Tx) error {
		o := &op{p: p, now: s.cfg.Now().UTC(), action: action}
		o.record("", action, target, details)
		return s.appendEvents(ctx, tx, o)
	})
}
