package api_test

import "testing"

// TestDeferredGrantsKeepTheirNarrowing covers what a review of the deferred
// grants found: a client-credentials token narrowed below its key invites
// with the token's limit, not the key's; an impersonation saves no SSO
// connection or SCIM mapping (each is a grant weighed later against whoever
// saved it); a SCIM mapping beyond its saver's grant is refused when saved.
func TestDeferredGrantsKeepTheirNarrowing(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()
	acme := "organization:" + w.org

	// a key allowed manage and manage_members; its token narrowed to manage_members
	sa := newServiceAccount(h, "acme", []string{"admin"}, []string{"manage", "manage_members"})
	status, tok := clientCredentials(h, sa.keyID, sa.key, false, "manage_members")
	if status != 200 {
		t.Fatalf("client credentials: %d %v", status, tok)
	}
	narrow := h.as(str(tok, "access_token"))
	ivy := createUser(h, "ivy@acme.example")
	p.do(201, "PUT", "/v1/organizations/acme/members/"+ivy, map[string]any{"roles": []string{"admin"}, "status": "invited"})
	inv := narrow.do(201, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "ivy@acme.example", "roles": []string{"member"}})
	h.as("").fails(403, "forbidden", "", "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(false, acme, "manage", "user:"+ivy)
	// the key itself could have: the same invitation sent with the key is accepted
	inv = h.as(sa.key).do(201, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "ivy@acme.example", "roles": []string{"member"}})
	h.as("").do(200, "POST", "/v1/invitations/"+str(inv, "token")+"/accept", map[string]any{})
	h.expect(true, acme, "manage", "user:"+ivy)

	// an impersonation of an admin saves no connection and no SCIM mapping
	root := createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", root, "admin")
	staff := createUser(h, "staff@acme.example")
	putMember(h, testKey, "acme", staff, "admin")
	admin := h.as(h.token(root, ""))
	im := impersonate(h.as(h.token(staff, "")), "", root, "acme", "*")
	imp := h.as(impersonationToken(h.as(h.token(staff, "")), im))
	conn := "/v1/organizations/acme/connections/" + w.conn
	imp.fails(403, "forbidden", "", "PATCH", conn, map[string]any{"name": "Okta (support)"})
	imp.fails(403, "forbidden", "", "POST", "/v1/organizations/acme/connections", map[string]any{"type": "oidc", "issuer": w.idp.URL, "clientId": "x", "clientSecret": "y"})
	imp.fails(403, "forbidden", "", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Ops", "roles": []string{"member"}}}})
	admin.do(200, "PATCH", conn, map[string]any{"name": "Okta (root)"}) // the admin herself may

	// a SCIM mapping beyond its saver's grant is refused when saved
	scimOnly := createUser(h, "scim@acme.example")
	p.do(201, "POST", "/v1/organizations/acme/delegations", map[string]any{"grantee": "user:" + scimOnly, "scopes": []string{"scim", "members"}})
	so := h.as(h.token(scimOnly, ""))
	so.fails(403, "forbidden", "", "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Admins", "roles": []string{"admin"}}}})
	so.do(200, "PUT", "/v1/organizations/acme/scim/mappings", map[string]any{"mappings": []any{map[string]any{"group": "Staff", "roles": []string{"member"}}}})
}
