package main

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/authzed/spicedb/pkg/tuple"

	"github.com/trellis-iam/trellis/engine"
)

// The demo of `make run`: a provider, a reseller, two customers with regional
// sub-orgs, a dozen users and an app schema with `document`.
var (
	//go:embed demo/app.zed
	demoAppSchema string
	//go:embed demo/relationships.txt
	demoRelationships string
)

// loadDemo writes the demo relationships.
func loadDemo(ctx context.Context, e engine.Engine) (string, error) {
	var updates []engine.RelationshipUpdate
	sc := bufio.NewScanner(strings.NewReader(demoRelationships))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := tuple.Parse(line)
		if err != nil {
			return "", fmt.Errorf("demo: %q: %w", line, err)
		}
		rel := engine.Relationship{
			Resource: engine.ObjectRef{Type: r.Resource.ObjectType, ID: r.Resource.ObjectID},
			Relation: r.Resource.Relation,
			Subject:  engine.SubjectRef{Object: engine.ObjectRef{Type: r.Subject.ObjectType, ID: r.Subject.ObjectID}},
		}
		if r.Subject.Relation != tuple.Ellipsis {
			rel.Subject.Relation = r.Subject.Relation
		}
		updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel})
	}
	return e.WriteRelationships(ctx, updates)
}

// demoTour is what `make run` prints: three curls that answer as printed.
func demoTour(base, key string) string {
	h := fmt.Sprintf("-H 'Authorization: Bearer %s' -H 'Content-Type: application/json'", key)
	return fmt.Sprintf(`
# allowed: emil is a member of the globex-eu region, so he can view its handbook
curl -s %[1]s/v1/check %[2]s -d '{"resource":"document:globex-eu-handbook","permission":"view","subject":"user:emil"}'

# denied: iris belongs to initech, a sibling customer; she cannot view globex's roadmap
curl -s %[1]s/v1/check %[2]s -d '{"resource":"document:globex-roadmap","permission":"view","subject":"user:iris"}'

# explain: rita administers the reseller northwind, which reaches globex-eu through two parent links
curl -s %[1]s/v1/explain %[2]s -d '{"resource":"document:globex-eu-handbook","permission":"edit","subject":"user:rita"}'
`, base, h)
}
