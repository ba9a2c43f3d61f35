package directory

import (
	"testing"

	"github.com/trellis-iam/trellis/store/memory"
)

// TestAWriteConfinedToAStaleTenantRunsUnconfined: the tenant an operation is
// confined to is a guess (a hint, or a snapshot read before the lock) checked
// again under the tenant's lock. When the organization has moved to another
// tenant meanwhile — here the hint says so — the operation must neither fail
// nor run under the wrong tenant's lock: it runs unconfined, and the wrong
// hint is forgotten.
func TestAWriteConfinedToAStaleTenantRunsUnconfined(t *testing.T) {
	ctx := t.Context()
	s, err := New(Deps{Store: memory.New(), Graph: newGraphFake()}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := Provider("test")
	root, err := s.CreateOrganization(ctx, p, CreateOrg{Name: "Root", Slug: "root"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := s.CreateOrganization(ctx, p, CreateOrg{Name: "Child", Slug: "child", Parent: root.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.tenants.Get(root.ID); !ok || got != root.ID {
		t.Fatalf("after a confined create, the hint for its parent = %q, %v; want %q", got, ok, root.ID)
	}
	u, err := s.CreateUser(ctx, p, CreateUser{Email: "u@example.com", Name: "U"})
	if err != nil {
		t.Fatal(err)
	}
	s.tenants.Add(child.ID, "org_elsewhere") // as if child had been moved since
	if _, _, err := s.PutMember(ctx, p, child.ID, u.ID, PutMember{Roles: []string{"member"}}); err != nil {
		t.Fatalf("a write with a stale tenant hint failed: %v", err)
	}
	if got, ok := s.tenants.Get(child.ID); ok {
		t.Fatalf("the stale hint was kept (%q)", got)
	}
	if _, err := s.GetMember(ctx, p, child.ID, u.ID); err != nil {
		t.Fatalf("the membership was not written: %v", err)
	}
}
