package scim

import "strings"

// The User's groups attribute (RFC 7643 §4.1.2) is read-only and computed
// when a User is returned: the organization's provisioned groups the user is
// in, directly or through nested groups ("type": "direct" or "indirect").
// Clients cannot set it: a POST or PUT body's groups are ignored (RFC 7644
// §3.5.1), a PATCH naming it is refused with mutability.

// withGroups sets the groups attribute of user docs (keyed by "id").
func (s *Server) withGroups(r *request, docs []map[string]any) error {
	if len(docs) == 0 {
		return nil
	}
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		id, _ := d["id"].(string)
		ids = append(ids, id)
	}
	groupsOf, err := s.dir.SCIMUserGroups(r.ctx, r.p, r.org, ids)
	if err != nil {
		return err
	}
	for _, d := range docs {
		id, _ := d["id"].(string)
		refs := groupsOf[id]
		if len(refs) == 0 {
			delete(d, "groups")
			continue
		}
		list := make([]any, 0, len(refs))
		for _, g := range refs {
			typ := "indirect"
			if g.Direct {
				typ = "direct"
			}
			list = append(list, map[string]any{"value": g.ID, "$ref": r.base + "/Groups/" + g.ID, "display": g.Display, "type": typ})
		}
		d["groups"] = list
	}
	return nil
}

// filterNamesGroups: the filter may test groups, so they are computed
// before it is matched (otherwise only for the page returned).
func filterNamesGroups(f string) bool { return strings.Contains(strings.ToLower(f), "groups") }
