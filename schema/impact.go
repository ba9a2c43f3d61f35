package schema

import (
	"context"
	"fmt"
	"slices"
	"sort"

	nsdiff "github.com/authzed/spicedb/pkg/diff/namespace"

	"github.com/trellis-iam/trellis/engine"
)

// Bounds of the access-impact computation of a schema diff.
const (
	impactMaxRelationships = 20000
	impactMaxResources     = 200
	impactMaxSamples       = 20
)

// accessImpact evaluates, for each definition whose permissions change, which
// users gain or lose which permission on stored resources. The proposed schema
// runs in a scratch in-memory SpiceDB loaded with the stored relationships.
func (m *Manager) accessImpact(ctx context.Context, proposed string, changes []Change, impact *Impact) error {
	affected := map[string]bool{}
	for _, c := range changes {
		switch c.Kind {
		case string(nsdiff.ChangedPermissionImpl), string(nsdiff.RemovedPermission), string(nsdiff.AddedPermission),
			string(nsdiff.LegacyChangedRelationImpl), string(nsdiff.RelationAllowedTypeAdded), string(nsdiff.RelationAllowedTypeRemoved):
			affected[c.Definition] = true
		}
	}
	if len(affected) == 0 {
		return nil
	}
	newC, err := compile("proposed", proposed)
	if err != nil {
		return parseProblem(err)
	}
	oldDefs, err := m.currentPermissions(ctx)
	if err != nil {
		return err
	}
	var rels []engine.Relationship
	for _, d := range newC.ObjectDefinitions {
		found, err := m.readAll(ctx, d.Name, impactMaxRelationships-len(rels))
		if err != nil {
			return err
		}
		rels = append(rels, found...)
	}
	scratch, stop, err := engine.NewScratch(ctx, proposed, rels)
	if err != nil {
		return err
	}
	defer stop()

	newPerms := map[string][]string{}
	for _, d := range newC.ObjectDefinitions {
		for _, r := range d.Relation {
			if r.UsersetRewrite != nil {
				newPerms[d.Name] = append(newPerms[d.Name], r.Name)
			}
		}
	}
	names := make([]string, 0, len(affected))
	for n := range affected {
		names = append(names, n)
	}
	sort.Strings(names)
	var targets []engine.AccessTarget
	for _, def := range names {
		ids, err := m.resourceIDs(ctx, def)
		if err != nil {
			return err
		}
		perms := union(oldDefs[def], newPerms[def])
		for _, id := range ids {
			for _, p := range perms {
				targets = append(targets, engine.AccessTarget{Object: engine.ObjectRef{Type: def, ID: id}, Permission: p,
					MissingBefore: !slices.Contains(oldDefs[def], p), MissingAfter: !slices.Contains(newPerms[def], p)})
			}
		}
	}
	return engine.DiffAccess(ctx, m.graph, scratch, targets, func(gained bool, c engine.AccessChange) error {
		if gained {
			impact.SubjectsGaining++
			sample(impact, fmt.Sprintf("gains: %s %s on %s", c.Subject, c.Permission, c.Resource))
		} else {
			impact.SubjectsLosing++
			sample(impact, fmt.Sprintf("loses: %s %s on %s", c.Subject, c.Permission, c.Resource))
		}
		return nil
	})
}

func sample(impact *Impact, s string) {
	if len(impact.Samples) < impactMaxSamples {
		impact.Samples = append(impact.Samples, s)
	}
}

func (m *Manager) currentPermissions(ctx context.Context) (map[string][]string, error) {
	text, err := m.graph.ReadSchema(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	if text == "" {
		return out, nil
	}
	cs, err := compile("current", text)
	if err != nil {
		return nil, fmt.Errorf("schema: compile current: %w", err)
	}
	for _, d := range cs.ObjectDefinitions {
		for _, r := range d.Relation {
			if r.UsersetRewrite != nil {
				out[d.Name] = append(out[d.Name], r.Name)
			}
		}
	}
	return out, nil
}

func (m *Manager) readAll(ctx context.Context, resourceType string, limit int) ([]engine.Relationship, error) {
	if limit <= 0 {
		return nil, nil // the impact's budget is spent
	}
	// a type unknown to the stored schema holds nothing: its read error is no failure
	out, _ := engine.ReadAll(ctx, m.graph, engine.RelationshipFilter{ResourceType: resourceType}, limit)
	return out, nil
}

func (m *Manager) resourceIDs(ctx context.Context, def string) ([]string, error) {
	rels, err := m.readAll(ctx, def, impactMaxRelationships)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, r := range rels {
		if !seen[r.Resource.ID] && len(ids) < impactMaxResources {
			seen[r.Resource.ID] = true
			ids = append(ids, r.Resource.ID)
		}
	}
	return ids, nil
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
