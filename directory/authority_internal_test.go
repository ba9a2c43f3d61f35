package directory

import (
	"errors"
	"slices"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// storedAuthority: a grant recorded without a key is a user's (no limit) or
// refused when a service account made it (rows from before keys were kept);
// a provider API key's own id is its key; a key that does not exist grants
// nothing; the recorded limit narrows the key's.
func TestStoredAuthority(t *testing.T) {
	ctx := t.Context()
	st := memory.New()
	s, err := New(Deps{Store: st, Graph: newGraphFake()}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := s.cfg.Now()
	if err := st.InTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertServiceAccount(ctx, store.ServiceAccount{ID: "sa_1", Org: "org_1", Name: "bot", CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		return tx.InsertAPIKey(ctx, store.APIKey{ID: "key_1", ServiceAccount: "sa_1", Org: "org_1", Permissions: []string{"manage", "manage_members"}, CreatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	forbidden := func(p Principal, err error) bool { return errors.Is(err, trellis.ErrForbidden) }
	_ = st.InTx(ctx, func(tx store.Tx) error {
		if p, err := s.storedAuthority(ctx, tx, "user:usr_1", "", nil, "it"); err != nil || p.Kind != KindUser || p.Permissions != nil {
			t.Errorf("a user's grant: %+v %v", p, err)
		}
		if !forbidden(s.storedAuthority(ctx, tx, "service_account:sa_1", "", nil, "it")) {
			t.Error("a service account's grant without a key was not refused")
		}
		if !forbidden(s.storedAuthority(ctx, tx, "provider:pk_gone", "", nil, "it")) {
			t.Error("a provider API key's grant was not looked up by its own id")
		}
		if !forbidden(s.storedAuthority(ctx, tx, "service_account:sa_1", "key_gone", nil, "it")) {
			t.Error("a deleted key's grant was not refused")
		}
		if !forbidden(s.storedAuthority(ctx, tx, "service_account:sa_2", "key_1", nil, "it")) {
			t.Error("a key of another service account was accepted")
		}
		p, err := s.storedAuthority(ctx, tx, "service_account:sa_1", "key_1", []string{"manage_members"}, "it")
		if err != nil || p.Org != "org_1" || !slices.Equal(p.Permissions, []string{"manage_members"}) {
			t.Errorf("narrowed key: %+v %v, want org_1 and [manage_members]", p, err)
		}
		return nil
	})
}

func TestIntersectLimits(t *testing.T) {
	for _, c := range []struct{ a, b, want []string }{
		{nil, nil, nil},
		{nil, []string{"view_audit"}, []string{"view_audit"}},
		{[]string{"manage"}, []string{"manage_members"}, []string{"manage_members"}},
		{[]string{"manage", "view_audit"}, []string{"manage"}, []string{"manage", "view_audit"}},
		{[]string{"manage_roles"}, []string{"view_audit"}, []string{}},
	} {
		got := intersectLimits(c.a, c.b)
		if !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("intersectLimits(%v, %v) = %#v, want %#v", c.a, c.b, got, c.want)
		}
		for _, perm := range []string{"manage", "manage_members", "view_audit", "manage_roles", "access"} {
			if keyAllows(got, perm) && !(keyAllows(c.a, perm) && keyAllows(c.b, perm)) {
				t.Errorf("intersectLimits(%v, %v) allows %s, which one of them does not", c.a, c.b, perm)
			}
		}
	}
}
