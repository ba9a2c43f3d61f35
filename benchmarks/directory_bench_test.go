package benchmarks

import (
	"context"
	"fmt"
	"testing"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/memory"
)

// BenchmarkDirectoryWrite measures directory writes on the default stack
// (embedded SpiceDB memdb, check cache, memory store) as a customer admin —
// the path every write pays authorization on, including the authorization by
// effect (ADR 0012) — and as the provider key, which skips the effect layer.
// 20 customer organizations under one reseller, 50 members each.
//
//	go test -run '^$' -bench BenchmarkDirectoryWrite -benchmem ./benchmarks/
func BenchmarkDirectoryWrite(b *testing.B) {
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 100000})
	if err != nil {
		b.Fatal(err)
	}
	defer cached.Close()
	if _, err := schema.NewManager(cached).Bootstrap(ctx, ""); err != nil {
		b.Fatal(err)
	}
	dir, err := directory.New(directory.Deps{Store: memory.New(), Graph: cached}, directory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	p := directory.Provider("bench")
	if _, err := dir.CreateOrganization(ctx, p, directory.CreateOrg{Name: "Reseller", Slug: "reseller"}); err != nil {
		b.Fatal(err)
	}
	perms := []string{"manage_members"}
	if _, err := dir.CreateRole(ctx, p, "reseller", directory.RoleInput{Key: "people", Permissions: &perms}); err != nil {
		b.Fatal(err)
	}
	const orgs, members = 20, 50
	type tenant struct {
		slug, admin, group string
		users              []string
	}
	var tenants []tenant
	for i := range orgs {
		t := tenant{slug: fmt.Sprintf("customer-%d", i)}
		if _, err := dir.CreateOrganization(ctx, p, directory.CreateOrg{Name: t.slug, Slug: t.slug, Parent: "reseller"}); err != nil {
			b.Fatal(err)
		}
		for j := range members {
			u, err := dir.CreateUser(ctx, p, directory.CreateUser{Email: fmt.Sprintf("u%d@%s.example", j, t.slug), Name: "U"})
			if err != nil {
				b.Fatal(err)
			}
			roles := []string{"member"}
			if j == 0 {
				roles, t.admin = []string{"admin"}, u.ID
			}
			if _, _, err := dir.PutMember(ctx, p, t.slug, u.ID, directory.PutMember{Roles: roles}); err != nil {
				b.Fatal(err)
			}
			t.users = append(t.users, u.ID)
		}
		name := "Staff"
		g, err := dir.CreateGroup(ctx, p, t.slug, directory.GroupInput{Name: &name, Roles: &[]string{"member"}})
		if err != nil {
			b.Fatal(err)
		}
		t.group = g.ID
		tenants = append(tenants, t)
	}
	for _, as := range []string{"customer-admin", "provider"} {
		principal := func(t tenant) directory.Principal {
			if as == "provider" {
				return p
			}
			return directory.Principal{Kind: directory.KindUser, ID: t.admin}
		}
		b.Run("put-member/"+as, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				t := tenants[i%orgs]
				roles := []string{"member"}
				if (i/orgs)%2 == 0 {
					roles = append(roles, "people")
				}
				if _, _, err := dir.PutMember(ctx, principal(t), t.slug, t.users[1+(i/orgs)%(members-1)], directory.PutMember{Roles: roles}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("group-member/"+as, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				t := tenants[i%orgs]
				u := t.users[1+(i/orgs)%(members-1)]
				if (i/(orgs*(members-1)))%2 == 0 {
					_, err = dir.PutGroupMember(ctx, principal(t), t.slug, t.group, u)
				} else {
					err = dir.RemoveGroupMember(ctx, principal(t), t.slug, t.group, u)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
