package conformance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// testDeferredWrites: writes made under store.DeferWrites are seen by the
// transaction's own reads and commit; one that fails is reported — by the
// write, a later statement, the end of its Savepoint (which undoes its part
// and leaves the transaction usable), Flush or InTx — and never commits.
func testDeferredWrites(t *testing.T, s store.Store) {
	seed(t, s)
	ctx := store.DeferWrites(t.Context())
	carl, dora, eve := userRow("usr_c3", "carl@example.com"), userRow("usr_d4", "dora@example.com"), userRow("usr_e5", "eve@example.com")
	taken := userRow("usr_x1", "ada@example.com") // seed's usr_a1 holds the email
	res := scimRow("org_a1", store.SCIMUser, carl.ID, "carl")
	mustTx(t, s, func(tx store.Tx) error {
		if err := errors.Join(tx.InsertUser(ctx, carl), tx.PutMembership(ctx, memberRow("org_a1", carl.ID, "member")),
			tx.PutSCIMResource(ctx, res), tx.PutGroupMember(ctx, groupMember("grp_a1", "user", carl.ID))); err != nil {
			return err
		}
		if got, err := tx.GetUser(ctx, carl.ID); err != nil || got.Email != carl.Email {
			return fmt.Errorf("the transaction's read of its deferred user: %+v, %v", got, err)
		}
		// a deferred write that fails is its savepoint's failure
		err := tx.Savepoint(ctx, func() error {
			if err := tx.InsertUser(ctx, dora); err != nil {
				return err
			}
			return tx.InsertUser(ctx, taken)
		})
		if !errors.Is(err, trellis.ErrConflict) {
			return fmt.Errorf("a savepoint with a deferred conflicting insert: %v, want ErrConflict", err)
		}
		if err := tx.Savepoint(ctx, func() error { return tx.InsertUser(ctx, eve) }); err != nil {
			return fmt.Errorf("a savepoint after the failed one: %w", err)
		}
		return tx.Flush(ctx)
	})
	mustRead(t, s, func(tx store.Tx) error {
		for _, u := range []store.User{carl, eve} {
			if got, err := tx.GetUser(ctx, u.ID); err != nil || got.Email != u.Email {
				t.Errorf("committed deferred user %s: %+v, %v", u.ID, got, err)
			}
		}
		for _, id := range []string{dora.ID, taken.ID} {
			if _, err := tx.GetUser(ctx, id); !errors.Is(err, trellis.ErrNotFound) {
				t.Errorf("user %s of the failed savepoint: %v, want ErrNotFound", id, err)
			}
		}
		if _, err := tx.GetMembership(ctx, "org_a1", carl.ID); err != nil {
			t.Errorf("committed deferred membership: %v", err)
		}
		if _, err := tx.GetSCIMResource(ctx, "org_a1", store.SCIMUser, carl.ID); err != nil {
			t.Errorf("committed deferred SCIM resource: %v", err)
		}
		return nil
	})

	// outside a savepoint the failure ends the transaction: reported by the
	// write, by Flush or by InTx, and nothing of it commits
	frank := userRow("usr_f6", "frank@example.com")
	err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, frank); err != nil {
			return err
		}
		if err := tx.InsertUser(ctx, taken); err != nil {
			return err
		}
		return tx.Flush(ctx)
	})
	wantErr(t, "a transaction with a deferred conflicting insert", err, trellis.ErrConflict)
	err = s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, frank); err != nil {
			return err
		}
		return tx.InsertUser(ctx, taken) // not flushed: InTx sends it
	})
	wantErr(t, "a transaction ending with a deferred conflicting insert", err, trellis.ErrConflict)
	_, err = call(t, s, store.Tx.GetUser, frank.ID)
	wantErr(t, "the failed transactions' user", err, trellis.ErrNotFound)
}

// testLookupSCIM: LookupSCIM returns the named rows that exist — names of
// the organization and kind asked, case-insensitively; emails; memberships of
// the organization — including the transaction's own deferred writes.
func testLookupSCIM(t *testing.T, s store.Store) {
	seed(t, s)
	ctx := t.Context()
	u1, g1 := scimRow("org_a1", store.SCIMUser, "usr_a1", "Ada"), scimRow("org_a1", store.SCIMGroup, "grp_a1", "Admins")
	other := scimRow("org_c3", store.SCIMUser, "usr_b2", "Bob") // another organization's
	for _, r := range []store.SCIMResource{u1, g1, other} {
		do(t, s, store.Tx.PutSCIMResource, r)
	}
	carl := userRow("usr_c3", "carl@example.com")
	var got store.SCIMFound
	mustTx(t, s, func(tx store.Tx) error {
		d := store.DeferWrites(ctx)
		if err := errors.Join(tx.InsertUser(d, carl), tx.PutMembership(d, memberRow("org_a1", carl.ID, "member"))); err != nil {
			return err
		}
		var err error
		got, err = tx.LookupSCIM(ctx, store.SCIMLookup{Org: "org_a1",
			UserNames:  []string{"ADA", "Admins", "Bob", "nobody"},
			GroupNames: []string{"admins", "Ada"},
			Emails:     []string{"bob@example.com", "carl@example.com", "nobody@example.com"},
			Members:    []string{"usr_a1", "usr_b2", carl.ID}})
		return err
	})
	slices.SortFunc(got.Resources, func(a, b store.SCIMResource) int { return strings.Compare(a.Kind+a.ID, b.Kind+b.ID) })
	slices.SortFunc(got.Users, func(a, b store.User) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(got.Memberships, func(a, b store.Membership) int { return strings.Compare(a.User, b.User) })
	same(t, "LookupSCIM resources", got.Resources, []store.SCIMResource{g1, u1})
	same(t, "LookupSCIM users", got.Users, []store.User{userRow("usr_b2", "bob@example.com"), carl})
	same(t, "LookupSCIM memberships", got.Memberships, []store.Membership{memberRow("org_a1", "usr_a1", "admin"), memberRow("org_a1", carl.ID, "member")})
	var none store.SCIMFound
	mustRead(t, s, func(tx store.Tx) (err error) {
		none, err = tx.LookupSCIM(ctx, store.SCIMLookup{Org: "org_a1"})
		return err
	})
	same(t, "LookupSCIM of nothing", len(none.Resources)+len(none.Users)+len(none.Memberships), 0)
}
