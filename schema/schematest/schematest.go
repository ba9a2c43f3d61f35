// Package schematest holds system schemas of earlier releases, for tests and
// benchmarks that compare against them or upgrade from them.
package schematest

import (
	"strings"

	"github.com/trellis-iam/trellis/schema"
)

// BeforeLineage is the system schema as releases before the lineage relation
// wrote it (ADR 0018): govern and is_suspended climbing parent one level at a
// time, and no lineage relation. It panics if the system schema no longer
// reads as that change left it.
func BeforeLineage() string {
	text := schema.SystemText
	for _, r := range [][2]string{
		{"\trelation lineage: organization\n", ""},
		{"permission is_suspended = suspended + lineage->suspended", "permission is_suspended = suspended + parent->is_suspended"},
		{"permission governs_here = owner + admin + binding->manage + platform->manage\n\tpermission govern = governs_here + lineage->governs_here",
			"permission govern = owner + admin + binding->manage + parent->govern + platform->manage"},
	} {
		if !strings.Contains(text, r[0]) {
			panic("schematest: the system schema no longer says " + r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	return text
}
