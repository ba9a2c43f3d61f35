package directory

import (
	"context"
	"errors"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// maxLabels bounds the objects one Labels call looks up.
const maxLabels = 500

// Labels names graph objects the way a person reads them: an organization by
// its name and slug, a user by email, a group, role or service account by its
// name (ADR 0014, explain paths). Objects the directory does not hold (app
// objects, deleted rows) get no label. Callers are provider admins or keys
// whose answers are already confined (explain).
func (s *Service) Labels(ctx context.Context, objs []engine.ObjectRef) (map[engine.ObjectRef]string, error) {
	out := map[engine.ObjectRef]string{}
	err := s.read(ctx, func(tx store.Tx) error {
		for _, o := range objs {
			if _, done := out[o]; done || len(out) >= maxLabels {
				continue
			}
			label, err := labelOf(ctx, tx, o)
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if label != "" {
				out[o] = label
			}
		}
		return nil
	})
	return out, err
}

func labelOf(ctx context.Context, tx store.Tx, o engine.ObjectRef) (string, error) {
	switch o.Type {
	case "organization":
		org, err := tx.GetOrg(ctx, o.ID)
		return org.Name + " (" + org.Slug + ")", err
	case "user":
		u, err := tx.GetUser(ctx, o.ID)
		return u.Email, err
	case "group":
		g, err := tx.GetGroup(ctx, o.ID)
		return g.Name, err
	case "role":
		r, err := tx.GetRole(ctx, o.ID)
		return r.Name, err
	case "service_account":
		sa, err := tx.GetServiceAccount(ctx, o.ID)
		return sa.Name, err
	}
	return "", nil
}
