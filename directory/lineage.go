package directory

import (
	"context"
	"fmt"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// lineageBatch bounds the relationships one EnsureLineage operation writes
// (one outbox entry, one atomic SpiceDB write).
const lineageBatch = 5000

// systemPrincipal is Trellis itself, for the maintenance EnsureLineage runs.
var systemPrincipal = Principal{Kind: KindProvider, ID: "system"}

// EnsureLineage writes the lineage relationships (an organization under each
// of its ancestors, which govern and is_suspended read) that the organization
// rows imply and the graph lacks: every one after an upgrade from a release
// that did not write them, none on later starts. It only adds: moves and
// deletes remove lineage themselves. Each batch is an operation of its own,
// run alone like every operation that spans tenants, and touches what the
// rows it reads imply, so a move committed meanwhile is applied before or
// after it, never half. It returns how many relationships it wrote.
func (s *Service) EnsureLineage(ctx context.Context) (int, error) {
	stored, err := engine.ReadAll(ctx, s.graph, engine.RelationshipFilter{ResourceType: "organization", Relation: "lineage"}, 0)
	if err != nil {
		return 0, fmt.Errorf("directory: reading lineage: %w", err)
	}
	have := make(map[string]bool, len(stored))
	for _, r := range stored {
		have[r.Resource.ID+"|"+r.Subject.Object.ID] = true
	}
	written := 0
	for {
		var batch []string // the relationships this operation writes, as keys of have
		err := s.run(store.Unconfined(ctx), systemPrincipal, "organization.lineage", func(tx store.Tx, o *op) error {
			batch = batch[:0]
			orgs, err := tx.ListOrgs(ctx, store.OrgFilter{})
			if err != nil {
				return err
			}
			parent := make(map[string]string, len(orgs))
			for _, org := range orgs {
				parent[org.ID] = org.Parent
			}
			for _, org := range orgs {
				above, err := s.rowAncestors(parent, org.ID)
				if err != nil {
					return err
				}
				for _, a := range above {
					if have[org.ID+"|"+a] {
						continue
					}
					o.touch(lineageTuples(org.ID, []string{a})...)
					if batch = append(batch, org.ID+"|"+a); len(batch) == lineageBatch {
						return nil
					}
				}
			}
			return nil
		})
		if err != nil {
			return written, fmt.Errorf("directory: writing lineage: %w", err)
		}
		if len(batch) == 0 {
			return written, nil
		}
		written += len(batch)
		for _, k := range batch {
			have[k] = true
		}
	}
}

// rowAncestors lists id's ancestors, top first, from a parent map of the rows.
func (s *Service) rowAncestors(parent map[string]string, id string) ([]string, error) {
	var up []string
	for cur := parent[id]; cur != ""; cur = parent[cur] {
		if len(up) > s.cfg.MaxDepth {
			return nil, fmt.Errorf("directory: organization %s: parent chain deeper than %d", id, s.cfg.MaxDepth)
		}
		up = append(up, cur)
	}
	for i, j := 0, len(up)-1; i < j; i, j = i+1, j-1 {
		up[i], up[j] = up[j], up[i]
	}
	return up, nil
}
