package api_test

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSSOConnectionsAPI: connections are managed by manage_sso holders of
// their organization; secrets never come back; another org's are 404.
func TestSSOConnectionsAPI(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()
	base := "/v1/organizations/acme/connections"

	got := p.do(200, "GET", base+"/"+w.conn, nil)
	if got["hasClientSecret"] != true || got["clientSecret"] != nil || !strings.Contains(str(got, "redirectUri"), "callback") {
		t.Fatalf("connection %v: want hasClientSecret, no clientSecret, a redirectUri", got)
	}
	for _, c := range p.do(200, "GET", base, nil)["connections"].([]any) {
		if _, leaked := c.(map[string]any)["clientSecret"]; leaked {
			t.Fatal("list returns the client secret")
		}
	}
	// bad input names the field
	p.fails(400, "", "type", "POST", base, map[string]any{"type": "ldap"})
	p.fails(400, "", "issuer", "POST", base, map[string]any{"type": "oidc", "issuer": "http://idp.example.com", "clientId": "c", "clientSecret": "s"})
	p.fails(400, "", "clientSecret", "POST", base, map[string]any{"type": "oidc", "issuer": "https://idp.example.com", "clientId": "c"})
	p.fails(400, "", "metadataXml", "POST", base, map[string]any{"type": "saml", "metadataXml": "<nope/>"})
	p.fails(400, "", "roleMapping[0].roles", "POST", base, map[string]any{"type": "oidc", "issuer": "https://idp.example.com", "clientId": "c", "clientSecret": "s",
		"roleMapping": []map[string]any{{"claim": "groups", "value": "x"}}})
	p.fails(400, "", "type", "PATCH", base+"/"+w.conn, map[string]any{"type": "saml"})

	// PATCH disables; sign-in through it is then refused
	if out := p.do(200, "PATCH", base+"/"+w.conn, map[string]any{"enabled": false}); out["enabled"] != false {
		t.Fatalf("PATCH enabled=false: %v", out)
	}
	w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 404, "", "")
	p.do(200, "PATCH", base+"/"+w.conn, map[string]any{"enabled": true})

	// a customer admin manages its org's connections; a plain member may not;
	// another organization's admin does not see them
	admin := createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", admin, "admin")
	member := createUser(h, "pat@acme.example")
	putMember(h, testKey, "acme", member, "member")
	createOrg(h, testKey, "Globex", "globex", "")
	stranger := createUser(h, "hank@globex.example")
	putMember(h, testKey, "globex", stranger, "admin")

	adminTok := h.token(admin, "acme")
	h.as(adminTok).do(200, "GET", base+"/"+w.conn, nil)
	h.as(h.token(member, "acme")).fails(403, "", "", "GET", base, nil)
	strangerTok := h.token(stranger, "globex")
	h.as(strangerTok).fails(404, "", "", "GET", base, nil)
	h.as(strangerTok).fails(404, "", "", "DELETE", base+"/"+w.conn, nil)
	h.as(strangerTok).fails(404, "", "", "GET", "/v1/organizations/globex/connections/"+w.conn, nil) // not globex's
	h.as(adminTok).fails(404, "", "", "GET", "/v1/organizations/globex/connections", nil)

	// test connection: a sign-in at the IdP that creates nothing
	w.idp.SetUser(map[string]any{"sub": "okta|tess", "email": "tess@acme.example", "email_verified": true, "groups": []string{"admins"}})
	test := h.as(adminTok).do(200, "POST", base+"/"+w.conn+"/test", nil)
	_, status, body := newBrowser(t).get(str(test, "url"))
	if status != 200 || !strings.Contains(body, `"okta|tess"`) || !strings.Contains(body, `"admin"`) {
		t.Fatalf("connection test: %d %s", status, body)
	}
	if out := p.do(200, "GET", "/v1/users?email=tess%40acme.example", nil); len(out["users"].([]any)) != 0 {
		t.Fatal("a connection test created a user")
	}
	if _, status, _ := newBrowser(t).get(str(test, "url")); status != 400 {
		t.Fatalf("a test ticket works twice (%d)", status)
	}

	h.as(adminTok).do(204, "DELETE", base+"/"+w.conn, nil)
	p.fails(404, "", "", "GET", base+"/"+w.conn, nil)
	wantAudit(t, h, "acme", "connection.create", "connection.update", "connection.delete", "connection.test")
}

// TestSSOApplicationsAPI: provider admins register applications; the secret
// is shown once and kept hashed; redirect URIs are checked.
func TestSSOApplicationsAPI(t *testing.T) {
	h := newSSOHarness(t)
	p := h.provider()
	out := p.do(201, "POST", "/v1/applications", map[string]any{"name": "CRM", "type": "web", "redirectUris": []string{"https://crm.example/cb"}})
	if str(out, "clientSecret") == "" || str(out, "clientId") == "" {
		t.Fatalf("created %v: want clientId and clientSecret", out)
	}
	id := str(out, "id")
	if got := p.do(200, "GET", "/v1/applications/"+id, nil); got["clientSecret"] != nil {
		t.Fatal("GET returns the secret")
	}
	if spa := p.do(201, "POST", "/v1/applications", map[string]any{"name": "SPA", "type": "spa", "redirectUris": []string{"http://127.0.0.1:3000/cb"}}); spa["clientSecret"] != nil {
		t.Fatal("a public client got a secret")
	}
	p.fails(400, "", "type", "POST", "/v1/applications", map[string]any{"name": "x", "type": "daemon", "redirectUris": []string{"https://a.example/cb"}})
	p.fails(400, "", "redirectUris", "POST", "/v1/applications", map[string]any{"name": "x", "type": "web"})
	p.fails(400, "", "redirectUris[0]", "POST", "/v1/applications", map[string]any{"name": "x", "type": "web", "redirectUris": []string{"http://crm.example/cb"}})
	p.fails(400, "", "redirectUris[0]", "POST", "/v1/applications", map[string]any{"name": "x", "type": "web", "redirectUris": []string{"https://crm.example/cb#frag"}})
	p.fails(400, "", "name", "POST", "/v1/applications", map[string]any{"type": "web", "redirectUris": []string{"https://crm.example/cb"}})

	createOrg(h, testKey, "Acme", "acme", "")
	admin := createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", admin, "admin")
	h.as(h.token(admin, "acme")).fails(403, "", "", "POST", "/v1/applications", map[string]any{"name": "x", "type": "web", "redirectUris": []string{"https://a.example/cb"}})
	h.as(h.token(admin, "acme")).fails(403, "", "", "GET", "/v1/applications", nil)

	p.do(204, "DELETE", "/v1/applications/"+id, nil)
	p.fails(404, "", "", "GET", "/v1/applications/"+id, nil)
}

// TestSSODiscoveryPickerAndHostedLogin: discovery routes only verified
// domains; a user in two organizations the connection reaches picks one;
// the hosted page is branded and escapes what it shows; email-first works.
func TestSSODiscoveryPickerAndHostedLogin(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()

	d := p.do(200, "GET", "/sso/discover?email=Alice%40ACME.example", nil)
	if d["organization"] != w.org || d["connection"] != w.conn || !strings.HasSuffix(str(d, "loginUrl"), "/login/acme?login_hint=alice%40acme.example") {
		t.Fatalf("discover: %v", d)
	}
	createOrg(h, testKey, "Globex", "globex", "")
	p.do(201, "POST", "/v1/organizations/globex/domains", map[string]any{"domain": "globex.example"}) // claimed, not verified
	p.fails(404, "", "", "GET", "/sso/discover?email=x%40globex.example", nil)
	p.fails(404, "", "", "GET", "/sso/discover?email=x%40nowhere.example", nil)
	p.fails(400, "", "email", "GET", "/sso/discover?email=not-an-email", nil)

	// email-first: no hint → the email page → the org's IdP → the app
	b := newBrowser(t)
	verifier, challenge := pkce()
	u, status, body := b.get(w.app.authorizeURL("st", challenge, nil))
	if status != 200 || u.Path != "/sso/login" || !strings.Contains(body, `name="email"`) {
		t.Fatalf("no hint: ended at %s %d, want the email page", u.Path, status)
	}
	u, status, _ = b.post(h.url+"/sso/login", url.Values{"authRequestID": {u.Query().Get("authRequestID")}, "email": {"alice@acme.example"}})
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("email-first: ended at %s %d", u, status)
	}
	_, tok := w.exchange(w.app.last().Get("code"), verifier)
	alice := str(jwtClaims(t, str(tok, "access_token")), "sub")

	// share the connection with a sub-organization alice also belongs to
	child := createOrg(h, testKey, "Acme EU", "acme-eu", w.org)
	p.do(200, "PATCH", "/v1/organizations/acme/connections/"+w.conn, map[string]any{"shareWithSubOrganizations": true})
	putMember(h, testKey, "acme-eu", alice, "member")
	b = newBrowser(t)
	verifier, challenge = pkce()
	u, status, body = b.get(w.app.authorizeURL("st", challenge, url.Values{"login_hint": {"alice@acme.example"}}))
	if status != 200 || u.Path != "/sso/pick" || !strings.Contains(body, child) || !strings.Contains(body, w.org) {
		t.Fatalf("two organizations: ended at %s %d, want the picker listing both", u.Path, status)
	}
	req := u.Query().Get("authRequestID")
	if _, status, body := newBrowser(t).post(h.url+"/sso/pick", url.Values{"authRequestID": {req}, "organization": {child}}); status != 400 || pageCode(body) != "browser_mismatch" {
		t.Fatalf("picking from another browser: %d %q, want 400 browser_mismatch", status, pageCode(body))
	}
	if _, status, _ := b.post(h.url+"/sso/pick", url.Values{"authRequestID": {req}, "organization": {createOrg(h, testKey, "Other", "other", "")}}); status != 403 {
		t.Fatalf("picking an organization not offered: %d, want 403", status)
	}
	u, status, _ = b.post(h.url+"/sso/pick", url.Values{"authRequestID": {req}, "organization": {child}})
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("pick: ended at %s %d", u, status)
	}
	status, tok = w.exchange(w.app.last().Get("code"), verifier)
	if status != 200 || jwtClaims(t, str(tok, "access_token"))["org"] != child || jwtClaims(t, str(tok, "id_token"))["org_slug"] != "acme-eu" {
		t.Fatalf("picked acme-eu: %d %v", status, tok)
	}

	// the hosted page: branded, escaped
	p.do(200, "PATCH", "/v1/organizations/acme", map[string]any{"name": "Acme <script>x</script>", "branding": map[string]any{"primaryColor": "#123456"}})
	_, status, body = newBrowser(t).get(h.url + "/login/acme?login_hint=a%22%3E%3Cb%3E")
	if status != 200 || !strings.Contains(body, "#123456") || strings.Contains(body, "<script>x") || strings.Contains(body, `"><b>`) {
		t.Fatalf("hosted login: %d %s", status, body)
	}
	if _, status, _ := newBrowser(t).get(h.url + "/login/nope"); status != 404 {
		t.Fatalf("hosted login of an unknown org: %d", status)
	}
}

// TestSSOPolicies: an organization's sign-in policy refuses other methods,
// weaker assurance, and refresh past its session max age.
func TestSSOPolicies(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()
	base := "/v1/organizations/acme/sso-policy"
	if got := p.do(200, "GET", base, nil); len(strs(got["allowedSignInMethods"])) != 0 {
		t.Fatalf("default policy %v", got)
	}
	p.fails(400, "", "allowedSignInMethods[0]", "PUT", base, map[string]any{"allowedSignInMethods": []string{"ldap"}})
	p.fails(400, "", "sessionMaxAge", "PUT", base, map[string]any{"sessionMaxAge": "forever"})
	createOrg(h, testKey, "Globex", "globex", "")
	stranger := createUser(h, "hank@globex.example")
	putMember(h, testKey, "globex", stranger, "admin")
	h.as(h.token(stranger, "globex")).fails(404, "", "", "PUT", base, map[string]any{})

	p.do(200, "PUT", base, map[string]any{"allowedSignInMethods": []string{"saml"}})
	w.idp.SetUser(map[string]any{"sub": "okta|olga", "email": "olga@acme.example", "email_verified": true, "acr": "pwd"})
	w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "method_not_allowed", "olga@acme.example")

	p.do(200, "PUT", base, map[string]any{"requiredAcr": []string{"mfa"}, "sessionMaxAge": "1h"})
	w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "acr_insufficient", "olga@acme.example")

	w.idp.SetUser(map[string]any{"sub": "okta|olga", "email": "olga@acme.example", "email_verified": true, "acr": "mfa"})
	code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	status, tok := w.exchange(code, verifier)
	if status != 200 || jwtClaims(t, str(tok, "id_token"))["acr"] != "mfa" {
		t.Fatalf("exchange: %d %v, want acr mfa", status, tok)
	}
	status, tok = w.refresh(str(tok, "refresh_token"))
	if status != 200 {
		t.Fatalf("refresh within the session: %d %v", status, tok)
	}
	h.clock.Advance(61 * time.Minute)
	if status, out := w.refresh(str(tok, "refresh_token")); status != 400 {
		t.Fatalf("refresh past sessionMaxAge: %d %v, want 400", status, out)
	}
	wantAudit(t, h, "acme", "sso_policy.update", "oauth.token.refresh.refused")
}

// TestSSOAuthorityOfTheConnectionCreator: a sign-in grants at most what the
// connection's creator could grant. An SSO-only delegate (manage_sso, not
// manage_members) configures a connection: its sign-ins cannot add members
// (refused, audited as an escalation, nothing granted); the same IdP through
// a connection an admin configured can.
func TestSSOAuthorityOfTheConnectionCreator(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()
	sue := createUser(h, "sue@acme.example")
	p.do(201, "POST", "/v1/organizations/acme/delegations", map[string]any{"grantee": "user:" + sue, "scopes": []string{"sso"}})
	sueTok := h.token(sue, "")
	// the world's connection (by the provider) is deleted; sue makes her own
	p.do(204, "DELETE", "/v1/organizations/acme/connections/"+w.conn, nil)
	out := h.as(sueTok).do(201, "POST", "/v1/organizations/acme/connections", map[string]any{
		"type": "oidc", "issuer": w.idp.URL, "clientId": w.idp.ClientID, "clientSecret": w.idp.ClientSecret})
	if out["createdBy"] != "user:"+sue {
		t.Fatalf("connection %v: want createdBy user:%s", out, sue)
	}
	h.as(sueTok).fails(403, "", "", "PUT", "/v1/organizations/acme/members/"+sue, map[string]any{"roles": []string{"member"}}) // she cannot add members herself
	w.idp.SetUser(map[string]any{"sub": "okta|newbie", "email": "newbie@acme.example", "email_verified": true})
	_, challenge := pkce()
	_, status, body := newBrowser(t).get(w.app.authorizeURL("st", challenge, url.Values{"organization": {"acme"}}))
	if status != 403 || pageCode(body) != "not_allowed" {
		t.Fatalf("sign-in through sue's connection: %d %q, want 403 not_allowed", status, pageCode(body))
	}
	if out := p.do(200, "GET", "/v1/users?email=newbie%40acme.example", nil); len(out["users"].([]any)) != 0 {
		t.Fatal("the refused sign-in created a user")
	}
	wantAudit(t, h, "acme", "sso.signin.denied")

	// an admin's connection to the same IdP signs newbie in
	admin := createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", admin, "admin")
	h.as(sueTok).do(204, "DELETE", "/v1/organizations/acme/connections/"+str(out, "id"), nil)
	h.as(h.token(admin, "acme")).do(201, "POST", "/v1/organizations/acme/connections", map[string]any{
		"type": "oidc", "issuer": w.idp.URL, "clientId": w.idp.ClientID, "clientSecret": w.idp.ClientSecret})
	code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	if status, tok := w.exchange(code, verifier); status != 200 || jwtClaims(t, str(tok, "access_token"))["org"] != w.org {
		t.Fatalf("sign-in through the admin's connection: %d %v", status, tok)
	}
}

// TestSSOAuthorityOfWhoLastConfigured: a connection's role mapping is the
// grant of whoever last configured it, limited as the key they used is.
// Saving a mapping beyond the caller's grant is refused (an SSO-only delegate
// cannot take over an admin's connection by editing it, nor can an API key
// limited to manage_sso and manage_members on an admin service account); a
// connection the key may save grants membership through it, and stops signing
// anyone in once the key is revoked; an admin's connection stops granting
// admin when its configurer loses admin.
func TestSSOAuthorityOfWhoLastConfigured(t *testing.T) {
	w := newSSOWorld(t)
	h, p := w.h, w.h.provider()
	acme := "organization:" + w.org
	conn := "/v1/organizations/acme/connections/" + w.conn
	sue := createUser(h, "sue@acme.example")
	p.do(201, "POST", "/v1/organizations/acme/delegations", map[string]any{"grantee": "user:" + sue, "scopes": []string{"sso"}})
	// sue may not save the provider's connection: its admin mapping is not hers to grant
	out := h.as(h.token(sue, "")).fails(403, "forbidden", "", "PATCH", conn, map[string]any{"name": "Okta (sue)"})
	if !strings.Contains(str(out, "detail"), "roleMapping[0].roles") {
		t.Errorf("refusal names no rule: %v", out)
	}
	wantEqual(t, "name after the refusal", p.do(200, "GET", conn, nil)["name"], "OIDC")
	code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	if status, tok := w.exchange(code, verifier); status != 200 {
		t.Fatalf("sign-in through the provider's connection: %d %v", status, tok)
	}
	alice := str(p.do(200, "GET", "/v1/users?email=alice%40acme.example", nil)["users"].([]any)[0].(map[string]any), "id")
	h.expect(true, acme, "manage", "user:"+alice)

	// a key limited to manage_sso and manage_members on an admin service account
	sa := str(p.do(201, "POST", "/v1/organizations/acme/service-accounts", map[string]any{"name": "sso-bot", "roles": []string{"admin"}}), "id")
	k := p.do(201, "POST", "/v1/organizations/acme/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"manage_sso", "manage_members"}})
	bot := h.as(str(k, "key"))
	bot.fails(403, "forbidden", "", "PATCH", conn, map[string]any{"name": "Okta (bot)"})
	bot.fails(403, "forbidden", "", "POST", "/v1/organizations/acme/connections", map[string]any{
		"type": "oidc", "issuer": w.idp.URL, "clientId": "other", "clientSecret": "s", "roleMapping": []map[string]any{{"claim": "groups", "value": "x", "roles": []string{"admin"}}}})
	// without the admin mapping the connection is the key's to save, and grants membership
	bot.do(200, "PATCH", conn, map[string]any{"roleMapping": []any{}})
	w.idp.SetUser(map[string]any{"sub": "okta|cy", "email": "cy@acme.example", "email_verified": true, "groups": []string{"admins"}})
	code, verifier = w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	if status, tok := w.exchange(code, verifier); status != 200 {
		t.Fatalf("member sign-in through the bot's connection: %d %v", status, tok)
	}
	cy := str(p.do(200, "GET", "/v1/users?email=cy%40acme.example", nil)["users"].([]any)[0].(map[string]any), "id")
	h.expect(true, acme, "access", "user:"+cy)
	h.expect(false, acme, "manage", "user:"+cy)
	// revoked, the key answers for nothing
	p.do(204, "DELETE", "/v1/organizations/acme/service-accounts/"+sa+"/keys/"+str(k, "id"), nil)
	w.idp.SetUser(map[string]any{"sub": "okta|dee", "email": "dee@acme.example", "email_verified": true})
	w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "connection_authority", "dee@acme.example")

	// an admin saves the admin mapping; demoted, her mapping grants admin no more
	root := createUser(h, "root@acme.example")
	putMember(h, testKey, "acme", root, "admin")
	h.as(h.token(root, "")).do(200, "PATCH", conn, map[string]any{"roleMapping": []map[string]any{{"claim": "groups", "value": "admins", "roles": []string{"admin"}}}})
	putMember(h, testKey, "acme", root, "member")
	w.idp.SetUser(map[string]any{"sub": "okta|eli", "email": "eli@acme.example", "email_verified": true, "groups": []string{"admins"}})
	w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "not_allowed", "eli@acme.example")
}
