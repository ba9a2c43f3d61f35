package directory

import (
	"context"
	"slices"

	"github.com/trellis-iam/trellis/store"
)

// SCIMGroupRef is one entry of a SCIM User's read-only groups attribute
// (RFC 7643 §4.1.2): a provisioned group of the organization the user is in,
// directly or through groups nested in it.
type SCIMGroupRef struct {
	ID      string
	Display string
	Direct  bool
}

// SCIMUserGroups computes the groups attribute of the given provisioned
// users of org ref: the organization's provisioned groups that hold each
// user as a member (direct), and those that hold one of these through nested
// groups (indirect), from the directory's group membership rows. Groups of
// other organizations and groups not provisioned over SCIM (no SCIM Group
// resource to refer to) are left out.
func (s *Service) SCIMUserGroups(ctx context.Context, p Principal, ref string, users []string) (map[string][]SCIMGroupRef, error) {
	out := map[string][]SCIMGroupRef{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageMembers)
		if err != nil {
			return err
		}
		rows, err := tx.ListSCIMResources(ctx, org.ID, store.SCIMGroup, store.Page{})
		if err != nil {
			return err
		}
		names := map[string]string{} // provisioned group id → displayName
		for _, r := range rows {
			names[r.ID] = r.Name
		}
		parents := map[string][]string{} // group → the org's groups directly containing it
		parentsOf := func(kind, id string) ([]string, error) {
			key := kind + ":" + id
			if ps, ok := parents[key]; ok {
				return ps, nil
			}
			gs, err := tx.GroupsOf(ctx, kind, id)
			if err != nil {
				return nil, err
			}
			ps := []string{}
			for _, g := range gs {
				if _, ok := names[g.Group]; ok {
					ps = append(ps, g.Group)
				}
			}
			parents[key] = ps
			return ps, nil
		}
		for _, u := range users {
			direct, err := parentsOf("user", u)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			var refs []SCIMGroupRef
			for _, g := range direct {
				seen[g] = true
				refs = append(refs, SCIMGroupRef{ID: g, Display: names[g], Direct: true})
			}
			for queue := slices.Clone(direct); len(queue) > 0; {
				g := queue[0]
				queue = queue[1:]
				up, err := parentsOf("group", g)
				if err != nil {
					return err
				}
				for _, h := range up {
					if !seen[h] {
						seen[h] = true
						refs = append(refs, SCIMGroupRef{ID: h, Display: names[h]})
						queue = append(queue, h)
					}
				}
			}
			out[u] = refs
		}
		return nil
	})
	return out, err
}
