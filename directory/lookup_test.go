package directory

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// lookupsDown is a store whose "is this key taken?" lookups fail as they do
// when the database goes away in the middle of the transaction.
type lookupsDown struct{ store.Store }

func (s lookupsDown) InTx(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.InTx(ctx, func(tx store.Tx) error { return fn(lookupsDownTx{tx}) })
}

type lookupsDownTx struct{ store.Tx }

var errLookupDown = fmt.Errorf("%w: the connection was lost", trellis.ErrUnavailable)

func (lookupsDownTx) GetOrgBySlug(context.Context, string) (store.Org, error) {
	return store.Org{}, errLookupDown
}
func (lookupsDownTx) GetUser(context.Context, string) (store.User, error) {
	return store.User{}, errLookupDown
}
func (lookupsDownTx) GetUserByEmail(context.Context, string) (store.User, error) {
	return store.User{}, errLookupDown
}
func (lookupsDownTx) GetRoleByKey(context.Context, string, string) (store.Role, error) {
	return store.Role{}, errLookupDown
}

// TestAFailedLookupIsNotAFreeKey: a create first looks its unique key up, and
// only "not found" means the key is free. Any other failure is the answer
// (here ErrUnavailable, a 503), and nothing is written; a failed lookup once
// went on to the insert, whose "transaction aborted" error was a 500.
func TestAFailedLookupIsNotAFreeKey(t *testing.T) {
	ctx := t.Context()
	st := memory.New()
	provider := Principal{Kind: KindProvider, ID: "admin"}
	up, err := New(Deps{Store: st, Graph: newGraphFake()}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	org, err := up.CreateOrganization(ctx, provider, CreateOrg{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	down, err := New(Deps{Store: lookupsDown{st}, Graph: newGraphFake()}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, create := range map[string]func() error{
		"an organization": func() error {
			_, err := down.CreateOrganization(ctx, provider, CreateOrg{Name: "Beta", Slug: "beta"})
			return err
		},
		"a user with an id": func() error {
			_, err := down.CreateUser(ctx, provider, CreateUser{ID: "ada", Email: "ada@example.com"})
			return err
		},
		"a user": func() error {
			_, err := down.CreateUser(ctx, provider, CreateUser{Email: "bob@example.com"})
			return err
		},
		"a role": func() error {
			_, err := down.CreateRole(ctx, provider, org.ID, RoleInput{Key: "auditor", Permissions: &[]string{"view_audit"}})
			return err
		},
	} {
		if err := create(); !errors.Is(err, trellis.ErrUnavailable) {
			t.Errorf("creating %s while its lookup fails: %v; want ErrUnavailable", name, err)
		}
	}
	_ = st.Read(ctx, func(tx store.Tx) error {
		if orgs, err := tx.ListOrgs(ctx, store.OrgFilter{}); err != nil || len(orgs) != 1 {
			t.Errorf("organizations after the failed creates: %d %v, want only acme", len(orgs), err)
		}
		if _, err := tx.GetUser(ctx, "ada"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("user ada after the failed create: %v; want not found", err)
		}
		if _, err := tx.GetUserByEmail(ctx, "bob@example.com"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("user bob@example.com after the failed create: %v; want not found", err)
		}
		if _, err := tx.GetRoleByKey(ctx, org.ID, "auditor"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("role auditor after the failed create: %v; want not found", err)
		}
		return nil
	})
}
