package schema

import (
	"sort"
	"strings"
)

// rolePermissionPrefix marks the relations of `role` that carry a permission.
const rolePermissionPrefix = "grants_"

// RolePermissions is the permission catalogue custom roles draw from: one entry
// per `grants_<permission>` relation of the system `role` definition, sorted.
// Adding a scope to system.zed adds it here; no Go list to keep in step.
func RolePermissions() []string {
	var out []string
	for _, r := range systemDefs["role"].GetRelation() {
		if p, ok := strings.CutPrefix(r.GetName(), rolePermissionPrefix); ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Definitions lists the object definitions of a schema text, sorted.
func Definitions(text string) ([]string, error) {
	cs, err := compile("schema", text)
	if err != nil {
		return nil, parseProblem(err)
	}
	out := make([]string, 0, len(cs.ObjectDefinitions))
	for _, d := range cs.ObjectDefinitions {
		out = append(out, d.GetName())
	}
	sort.Strings(out)
	return out, nil
}
