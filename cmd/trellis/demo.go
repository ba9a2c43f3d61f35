package main

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
)

// The demo of `make run`: a provider, a reseller, two customers with regional
// sub-orgs, a dozen users and an app schema with `document`. The directory part
// goes through the directory service (the same code the HTTP API runs); only
// the app's own tuples (documents) and the platform admin are raw graph writes.
//
//go:embed demo/app.zed
var demoAppSchema string

// demoWorld is what the tour refers to.
type demoWorld struct {
	users map[string]string // name -> user id
	orgs  map[string]string // slug -> org id
	token string            // gary's access token (globex admin)
}

type demoMember struct {
	org, user string
	roles     []string
}

// loadDemo builds the demo tree through the directory.
func loadDemo(ctx context.Context, dir *directory.Service, graph engine.Engine, platform string) (demoWorld, error) {
	w := demoWorld{users: map[string]string{}, orgs: map[string]string{}}
	p := directory.Provider("demo")
	if _, err := dir.GetOrganization(ctx, p, "northwind"); err == nil {
		// a persistent store already holds the demo from an earlier start
		for _, name := range demoUsers {
			w.users[name] = name
		}
		return w, demoToken(ctx, dir, &w)
	}
	for _, name := range demoUsers {
		u, err := dir.CreateUser(ctx, p, directory.CreateUser{ID: name, Email: name + "@example.com", Name: strings.ToUpper(name[:1]) + name[1:]})
		if err != nil {
			return w, fmt.Errorf("demo user %s: %w", name, err)
		}
		w.users[name] = u.ID
	}
	for _, o := range []struct{ slug, name, parent string }{
		{"northwind", "Northwind Partners (reseller)", ""},
		{"globex", "Globex", "northwind"},
		{"globex-eu", "Globex EU", "globex"},
		{"initech", "Initech", "northwind"},
		{"initech-us", "Initech US", "initech"},
	} {
		org, err := dir.CreateOrganization(ctx, p, directory.CreateOrg{Name: o.name, Slug: o.slug, Parent: o.parent})
		if err != nil {
			return w, fmt.Errorf("demo organization %s: %w", o.slug, err)
		}
		w.orgs[o.slug] = org.ID
	}
	perms := []string{"manage_members"}
	if _, err := dir.CreateRole(ctx, p, "initech", directory.RoleInput{Key: "people-manager", Permissions: &perms}); err != nil {
		return w, fmt.Errorf("demo role: %w", err)
	}
	for _, m := range []demoMember{
		{"northwind", "rita", []string{"admin"}}, {"northwind", "ned", nil},
		{"globex", "gary", []string{"admin"}}, {"globex", "gina", nil},
		{"globex-eu", "emil", nil}, {"globex-eu", "bea", nil},
		{"initech", "ivan", []string{"admin"}}, {"initech", "iris", nil}, {"initech", "hank", []string{"member", "people-manager"}},
		{"initech-us", "uma", nil}, {"initech-us", "otto", nil},
	} {
		if _, _, err := dir.PutMember(ctx, p, m.org, w.users[m.user], directory.PutMember{Roles: m.roles}); err != nil {
			return w, fmt.Errorf("demo member %s in %s: %w", m.user, m.org, err)
		}
	}
	name := "Support"
	g, err := dir.CreateGroup(ctx, p, "globex-eu", directory.GroupInput{Name: &name, Roles: &[]string{"member"}})
	if err != nil {
		return w, fmt.Errorf("demo group: %w", err)
	}
	if _, err := dir.PutGroupMember(ctx, p, "globex-eu", g.ID, w.users["bea"]); err != nil {
		return w, fmt.Errorf("demo group member: %w", err)
	}
	// the app's own tuples, and the provider's staff on the platform object
	doc := func(id, relation string, s engine.SubjectRef) engine.RelationshipUpdate {
		return engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: engine.Relationship{
			Resource: engine.ObjectRef{Type: "document", ID: id}, Relation: relation, Subject: s}}
	}
	org := func(slug string) engine.SubjectRef {
		return engine.SubjectRef{Object: engine.ObjectRef{Type: "organization", ID: w.orgs[slug]}}
	}
	user := func(name string) engine.SubjectRef {
		return engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: w.users[name]}}
	}
	updates := []engine.RelationshipUpdate{
		doc("globex-eu-handbook", "org", org("globex-eu")),
		doc("globex-roadmap", "org", org("globex")),
		doc("globex-roadmap", "owner", user("gina")),
		doc("initech-plan", "org", org("initech")),
		doc("initech-plan", "viewer", user("uma")),
		doc("welcome", "org", org("northwind")),
		doc("welcome", "viewer", engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: "*"}}),
		{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: engine.ObjectRef{Type: "platform", ID: platform}, Relation: "admin", Subject: user("pat")}},
		{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: engine.ObjectRef{Type: "platform", ID: platform}, Relation: "support", Subject: user("sam")}},
	}
	if _, err := graph.WriteRelationships(ctx, updates); err != nil {
		return w, fmt.Errorf("demo documents: %w", err)
	}
	return w, demoToken(ctx, dir, &w)
}

var demoUsers = []string{"pat", "sam", "rita", "ned", "gary", "gina", "emil", "bea", "ivan", "iris", "hank", "uma", "otto"}

// demoToken mints gary's one-hour access token for the tour.
func demoToken(ctx context.Context, dir *directory.Service, w *demoWorld) error {
	tok, err := dir.IssueToken(ctx, directory.Provider("demo"), directory.IssueToken{Subject: "user:" + w.users["gary"], Organization: "globex", TTL: time.Hour})
	if err != nil {
		return fmt.Errorf("demo token: %w", err)
	}
	w.token = tok.AccessToken
	return nil
}

// demoTour is what `make run` prints: curls that answer as printed.
func demoTour(base, key string, w demoWorld) string {
	h := fmt.Sprintf("-H 'Authorization: Bearer %s' -H 'Content-Type: application/json'", key)
	return fmt.Sprintf(`
# allowed: emil is a member of the globex-eu region, so he can view its handbook
curl -s %[1]s/v1/check %[2]s -d '{"resource":"document:globex-eu-handbook","permission":"view","subject":"user:%[3]s"}'

# denied: iris belongs to initech, a sibling customer; she cannot view globex's roadmap
curl -s %[1]s/v1/check %[2]s -d '{"resource":"document:globex-roadmap","permission":"view","subject":"user:%[4]s"}'

# explain: rita administers the reseller northwind, which reaches globex-eu through two parent links
curl -s %[1]s/v1/explain %[2]s -d '{"resource":"document:globex-eu-handbook","permission":"edit","subject":"user:%[5]s"}'

# the organization tree, as the provider sees it
curl -s '%[1]s/v1/organizations?pageSize=10' -H 'Authorization: Bearer %[6]s'

# gary (globex admin, a 1-hour user token) lists globex's members...
curl -s %[1]s/v1/organizations/globex/members -H 'Authorization: Bearer %[7]s'

# ...but initech, a sibling customer, does not exist for him (404)
curl -s %[1]s/v1/organizations/initech -H 'Authorization: Bearer %[7]s'

# globex's audit log verifies (hash chain)
curl -s %[1]s/v1/organizations/globex/audit/verify -H 'Authorization: Bearer %[6]s'
`, base, h, w.users["emil"], w.users["iris"], w.users["rita"], key, w.token)
}
