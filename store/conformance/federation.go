package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// RunFederation runs the sign-in tables' suite (store.FederationRows).
func RunFederation(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"connections", testConnections},
		{"applications", testApplications},
		{"identities", testIdentities},
		{"policies", testSSOPolicies},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func connectionRow(id, org string) store.Connection {
	return store.Connection{ID: id, Org: org, Type: store.ConnectionOIDC, Name: "Okta", Issuer: "https://idp.example.com",
		ClientID: "client-" + id, SealedSecret: []byte{1, 2, 3}, JIT: true, Enabled: true, CreatedBy: "user:usr_a1", ConfiguredBy: "service_account:sa_b2", ConfiguredKey: "key_b2", ConfiguredLimit: []string{"manage_sso", "manage_members"},
		RoleMapping: []store.RoleRule{{Claim: "groups", Value: "admins", Roles: []string{"admin"}}},
		CreatedAt:   at(1), UpdatedAt: at(2)}
}

func testConnections(t *testing.T, s store.Store) {
	b := connectionRow("con_b2", "org_a1")
	a := connectionRow("con_a1", "org_a1")
	a.Type, a.Issuer, a.ClientID, a.SealedSecret, a.RoleMapping = store.ConnectionSAML, "", "", nil, nil
	a.MetadataXML, a.ShareWithSubOrgs, a.RecreateRemoved, a.JIT = "<EntityDescriptor/>", true, true, false
	fetched := at(2)
	a.MetadataURL, a.MetadataFetchedAt = "https://idp.example.com/metadata", &fetched
	other := connectionRow("con_c3", "org_b2")
	for _, c := range []store.Connection{b, other, a} {
		do(t, s, store.Tx.InsertConnection, c)
	}
	same(t, "GetConnection", get(t, s, store.Tx.GetConnection, "con_a1"), a)
	same(t, "GetConnection oidc", get(t, s, store.Tx.GetConnection, "con_b2"), b)
	same(t, "ListConnections sorted by id", get(t, s, store.Tx.ListConnections, "org_a1"), []store.Connection{a, b})
	same(t, "ListConnections of another org", get(t, s, store.Tx.ListConnections, "org_b2"), []store.Connection{other})
	_, err := call(t, s, store.Tx.GetConnection, "con_zz")
	wantErr(t, "GetConnection unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertConnection duplicate", exec(t, s, store.Tx.InsertConnection, connectionRow("con_a1", "org_b2")), trellis.ErrConflict)
	wantErr(t, "UpdateConnection unknown", exec(t, s, store.Tx.UpdateConnection, connectionRow("con_zz", "org_a1")), trellis.ErrNotFound)

	b.Enabled, b.Name, b.RoleMapping = false, "Okta (old)", nil
	do(t, s, store.Tx.UpdateConnection, b)
	same(t, "GetConnection updated", get(t, s, store.Tx.GetConnection, "con_b2"), b)
	a.MetadataError, a.MetadataFetchedAt = "fetch failed: 503", nil // a failed refresh is kept
	do(t, s, store.Tx.UpdateConnection, a)
	same(t, "GetConnection metadata status", get(t, s, store.Tx.GetConnection, "con_a1"), a)

	do(t, s, store.Tx.PutSSOIdentity, store.SSOIdentity{Connection: "con_b2", Subject: "s1", User: "usr_a1", Org: "org_a1", CreatedAt: at(3), LastSignInAt: at(3)})
	do(t, s, store.Tx.DeleteConnection, "con_b2")
	_, err = call(t, s, store.Tx.GetConnection, "con_b2")
	wantErr(t, "GetConnection deleted", err, trellis.ErrNotFound)
	wantErr(t, "identity of a deleted connection", getIdentity(t, s, "con_b2", "s1"), trellis.ErrNotFound)
	wantErr(t, "DeleteConnection unknown", exec(t, s, store.Tx.DeleteConnection, "con_b2"), trellis.ErrNotFound)
}

func applicationRow(id, client string) store.Application {
	return store.Application{ID: id, ClientID: client, SecretHash: []byte("0123456789abcdef0123456789abcdef"), Name: "App " + id,
		Type: "web", RedirectURIs: []string{"https://app.example.com/cb"}, CreatedBy: "provider:admin-key", CreatedAt: at(1), UpdatedAt: at(1)}
}

func testApplications(t *testing.T, s store.Store) {
	a := applicationRow("app_a1", "cl_a1")
	b := applicationRow("app_b2", "cl_b2")
	b.Type, b.SecretHash, b.PostLogout, b.RequiredACR = "spa", nil, []string{"https://app.example.com/"}, "mfa"
	do(t, s, store.Tx.InsertApplication, b)
	do(t, s, store.Tx.InsertApplication, a)
	same(t, "GetApplication", get(t, s, store.Tx.GetApplication, "app_b2"), b)
	same(t, "GetApplicationByClientID", get(t, s, store.Tx.GetApplicationByClientID, "cl_a1"), a)
	var apps []store.Application
	mustRead(t, s, func(tx store.Tx) (err error) { apps, err = tx.ListApplications(t.Context()); return err })
	same(t, "ListApplications", apps, []store.Application{a, b})
	wantErr(t, "InsertApplication duplicate client id", exec(t, s, store.Tx.InsertApplication, applicationRow("app_c3", "cl_a1")), trellis.ErrConflict)
	_, err := call(t, s, store.Tx.GetApplicationByClientID, "cl_zz")
	wantErr(t, "GetApplicationByClientID unknown", err, trellis.ErrNotFound)
	a.RedirectURIs, a.Name = []string{"https://app.example.com/a", "https://app.example.com/b"}, "renamed"
	do(t, s, store.Tx.UpdateApplication, a)
	same(t, "GetApplication updated", get(t, s, store.Tx.GetApplication, "app_a1"), a)
	do(t, s, store.Tx.DeleteApplication, "app_a1")
	_, err = call(t, s, store.Tx.GetApplicationByClientID, "cl_a1")
	wantErr(t, "GetApplicationByClientID deleted", err, trellis.ErrNotFound)
	wantErr(t, "DeleteApplication unknown", exec(t, s, store.Tx.DeleteApplication, "app_a1"), trellis.ErrNotFound)
	do(t, s, store.Tx.InsertApplication, applicationRow("app_c3", "cl_a1")) // the client id is free again
}

func getIdentity(t *testing.T, s store.Store, conn, subject string) error {
	t.Helper()
	return s.Read(t.Context(), func(tx store.Tx) error {
		_, err := tx.GetSSOIdentity(context.Background(), conn, subject)
		return err
	})
}

func testIdentities(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertConnection, connectionRow("con_a1", "org_a1"))
	id := store.SSOIdentity{Connection: "con_a1", Subject: "Sub-1", User: "usr_a1", Org: "org_a1", Roles: []string{"admin"}, CreatedAt: at(1), LastSignInAt: at(1)}
	do(t, s, store.Tx.PutSSOIdentity, id)
	var got store.SSOIdentity
	mustRead(t, s, func(tx store.Tx) (err error) {
		got, err = tx.GetSSOIdentity(t.Context(), "con_a1", "Sub-1")
		return err
	})
	same(t, "GetSSOIdentity", got, id)
	wantErr(t, "subjects are case-sensitive", getIdentity(t, s, "con_a1", "sub-1"), trellis.ErrNotFound)
	id.Roles, id.LastSignInAt = nil, at(5)
	do(t, s, store.Tx.PutSSOIdentity, id)
	mustRead(t, s, func(tx store.Tx) (err error) {
		got, err = tx.GetSSOIdentity(t.Context(), "con_a1", "Sub-1")
		return err
	})
	same(t, "GetSSOIdentity after update", got, id)
}

func testSSOPolicies(t *testing.T, s store.Store) {
	_, err := call(t, s, store.Tx.GetSSOPolicy, "org_a1")
	wantErr(t, "GetSSOPolicy none", err, trellis.ErrNotFound)
	p := store.SSOPolicy{Org: "org_a1", AllowedMethods: []string{"saml"}, RequiredACR: []string{"mfa", "phr"}, SessionMaxAge: 8*time.Hour + 1500*time.Millisecond, UpdatedAt: at(1)}
	do(t, s, store.Tx.PutSSOPolicy, p)
	same(t, "GetSSOPolicy", get(t, s, store.Tx.GetSSOPolicy, "org_a1"), p)
	p.AllowedMethods, p.RequiredACR, p.SessionMaxAge, p.UpdatedAt = nil, nil, 0, at(2)
	do(t, s, store.Tx.PutSSOPolicy, p)
	same(t, "GetSSOPolicy cleared", get(t, s, store.Tx.GetSSOPolicy, "org_a1"), p)
	_, err = call(t, s, store.Tx.GetSSOPolicy, "org_b2")
	wantErr(t, "GetSSOPolicy of another org", err, trellis.ErrNotFound)
}
