package conformance

import (
	"context"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

func scimTokenRow(id, org string) store.SCIMToken {
	return store.SCIMToken{ID: id, Org: org, Name: "okta", Hash: sha(id), CreatedBy: "user:usr_a1", CreatedKey: "key_a1",
		Permissions: []string{"manage_members"}, CreatedAt: at(0), ExpiresAt: at(60)}
}

func scimRow(org, kind, id, name string) store.SCIMResource {
	return store.SCIMResource{Org: org, Kind: kind, ID: id, Name: name, ExternalID: "ext-" + id, Version: 1,
		Doc: []byte(`{"userName":"` + name + `"}`), Roles: []string{"admin"}, Active: true, Members: []string{"usr_a1", "grp_b2"}, CreatedAt: at(1), UpdatedAt: at(2)}
}

func testSCIMTokens(t *testing.T, s store.Store) {
	k2, k1, k3 := scimTokenRow("sct_b2", "org_a1"), scimTokenRow("sct_a1", "org_a1"), scimTokenRow("sct_c3", "org_b2")
	k1.Permissions = nil
	for _, k := range []store.SCIMToken{k2, k1, k3} {
		do(t, s, store.Tx.InsertSCIMToken, k)
	}
	same(t, "GetSCIMToken", get(t, s, store.Tx.GetSCIMToken, "sct_b2"), k2)
	same(t, "ListSCIMTokens sorted by id, one org", get(t, s, store.Tx.ListSCIMTokens, "org_a1"), []store.SCIMToken{k1, k2})
	k2.LastUsedAt, k2.RevokedAt = ptr(at(5)), ptr(at(6))
	do(t, s, store.Tx.UpdateSCIMToken, k2)
	same(t, "GetSCIMToken after update", get(t, s, store.Tx.GetSCIMToken, "sct_b2"), k2)
	_, err := call(t, s, store.Tx.GetSCIMToken, "sct_zz")
	wantErr(t, "GetSCIMToken unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertSCIMToken duplicate", exec(t, s, store.Tx.InsertSCIMToken, k1), trellis.ErrConflict)
	wantErr(t, "UpdateSCIMToken unknown", exec(t, s, store.Tx.UpdateSCIMToken, scimTokenRow("sct_zz", "org_a1")), trellis.ErrNotFound)
}

func testSCIMMappings(t *testing.T, s store.Store) {
	ms := []store.SCIMMapping{{Group: "Engineering", Roles: []string{"admin", "billing"}}, {Group: "All", Roles: []string{"member"}}}
	mustTx(t, s, func(tx store.Tx) error { return tx.PutSCIMMappings(t.Context(), "org_a1", ms) })
	same(t, "SCIMMappings in stored order", get(t, s, store.Tx.SCIMMappings, "org_a1"), ms)
	same(t, "SCIMMappings of another org", len(get(t, s, store.Tx.SCIMMappings, "org_b2")), 0)
	mustTx(t, s, func(tx store.Tx) error { return tx.PutSCIMMappings(t.Context(), "org_a1", ms[1:]) })
	same(t, "SCIMMappings replaced", get(t, s, store.Tx.SCIMMappings, "org_a1"), ms[1:])
	mustTx(t, s, func(tx store.Tx) error { return tx.PutSCIMMappings(t.Context(), "org_a1", nil) })
	same(t, "SCIMMappings cleared", len(get(t, s, store.Tx.SCIMMappings, "org_a1")), 0)
}

func testSCIMResources(t *testing.T, s store.Store) {
	u2, u1 := scimRow("org_a1", store.SCIMUser, "usr_b2", "Bob@Example.com"), scimRow("org_a1", store.SCIMUser, "usr_a1", "ann@example.com")
	u1.Roles, u1.Doc = nil, nil
	g1 := scimRow("org_a1", store.SCIMGroup, "grp_a1", "Bob@Example.com")   // names are per kind
	other := scimRow("org_b2", store.SCIMUser, "usr_a1", "bob@example.com") // and per organization
	other.Pending = "members: usr_zz"
	for _, r := range []store.SCIMResource{u2, u1, g1, other} {
		do(t, s, store.Tx.PutSCIMResource, r)
	}
	var got store.SCIMResource
	mustRead(t, s, func(tx store.Tx) (err error) {
		got, err = tx.GetSCIMResource(t.Context(), "org_b2", store.SCIMUser, "usr_a1")
		return err
	})
	same(t, "GetSCIMResource", got, other)
	mustRead(t, s, func(tx store.Tx) (err error) {
		got, err = tx.SCIMResourceByName(t.Context(), "org_a1", store.SCIMUser, "bob@EXAMPLE.com")
		return err
	})
	same(t, "SCIMResourceByName ignores case", got, u2)
	var list []store.SCIMResource
	mustRead(t, s, func(tx store.Tx) (err error) {
		list, err = tx.ListSCIMResources(t.Context(), "org_a1", store.SCIMUser, store.Page{})
		return err
	})
	same(t, "ListSCIMResources sorted by id", list, []store.SCIMResource{u1, u2})
	mustRead(t, s, func(tx store.Tx) (err error) {
		list, err = tx.ListSCIMResources(t.Context(), "org_a1", store.SCIMUser, store.Page{After: "usr_a1", Limit: 1})
		return err
	})
	same(t, "ListSCIMResources page", list, []store.SCIMResource{u2})

	clash := scimRow("org_a1", store.SCIMUser, "usr_c3", "BOB@example.com")
	wantErr(t, "PutSCIMResource name taken", exec(t, s, store.Tx.PutSCIMResource, clash), trellis.ErrConflict)
	// renaming frees the old name
	u2.Name, u2.Version = "robert@example.com", 2
	do(t, s, store.Tx.PutSCIMResource, u2)
	do(t, s, store.Tx.PutSCIMResource, clash)
	mustTx(t, s, func(tx store.Tx) error { return tx.DeleteSCIMResource(t.Context(), "org_a1", store.SCIMUser, "usr_c3") })
	err := s.Read(t.Context(), func(tx store.Tx) error {
		_, err := tx.SCIMResourceByName(t.Context(), "org_a1", store.SCIMUser, "bob@example.com")
		return err
	})
	wantErr(t, "SCIMResourceByName after delete", err, trellis.ErrNotFound)
	err = s.InTx(t.Context(), func(tx store.Tx) error {
		return tx.DeleteSCIMResource(t.Context(), "org_a1", store.SCIMUser, "usr_c3")
	})
	wantErr(t, "DeleteSCIMResource unknown", err, trellis.ErrNotFound)
}

func testSCIMSync(t *testing.T, s store.Store) {
	rec := func(r store.SCIMRequest) {
		mustTx(t, s, func(tx store.Tx) error { return tx.RecordSCIMRequest(context.Background(), r) })
	}
	for i := range store.SCIMErrorsKept + 3 {
		rec(store.SCIMRequest{Org: "org_a1", Resource: "Users", Method: "POST", Status: 409, ScimType: "uniqueness", Detail: "taken", At: at(i)})
	}
	last := store.SCIMRequest{Org: "org_a1", Resource: "Users", Method: "PATCH", Status: 200, At: at(100)}
	rec(last)
	g := store.SCIMRequest{Org: "org_a1", Resource: "Groups", Method: "PUT", Status: 200, At: at(101)}
	rec(g)
	rec(store.SCIMRequest{Org: "org_b2", Resource: "Users", Method: "POST", Status: 400, ScimType: "invalidValue", At: at(102)})
	var sync []store.SCIMSync
	var errs []store.SCIMRequest
	mustRead(t, s, func(tx store.Tx) (err error) {
		sync, errs, err = tx.SCIMSyncStatus(t.Context(), "org_a1")
		return err
	})
	same(t, "SCIMSyncStatus per resource", sync, []store.SCIMSync{
		{Last: g, Requests: 1}, {Last: last, Requests: store.SCIMErrorsKept + 4, Errors: store.SCIMErrorsKept + 3}})
	if len(errs) != store.SCIMErrorsKept {
		t.Fatalf("kept %d errors, want %d", len(errs), store.SCIMErrorsKept)
	}
	same(t, "newest error first", errs[0].At, at(store.SCIMErrorsKept+2))
	same(t, "oldest kept", errs[len(errs)-1].At, at(3))
}
