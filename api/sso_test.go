package api_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/trellis-iam/trellis/federation/idptest"
)

// ssoWorld: organization acme with its verified domain acme.example and an
// OIDC connection to idp (groups "admins" → admin), and a registered app.
type ssoWorld struct {
	h    *harness
	idp  *idptest.OIDC
	org  string
	conn string
	app  *app
}

func newSSOWorld(t *testing.T) *ssoWorld {
	h := newSSOHarness(t)
	idp := idptest.NewOIDC()
	t.Cleanup(idp.Close)
	w := &ssoWorld{h: h, idp: idp, org: createOrg(h, testKey, "Acme", "acme", "")}
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/acme/domains", map[string]any{"domain": "acme.example"})
	p.do(200, "POST", "/v1/organizations/acme/domains/acme.example/verify", map[string]any{"method": "manual", "reason": "test"})
	out := p.do(201, "POST", "/v1/organizations/acme/connections", map[string]any{
		"type": "oidc", "issuer": idp.URL, "clientId": idp.ClientID, "clientSecret": idp.ClientSecret,
		"roleMapping": []map[string]any{{"claim": "groups", "value": "admins", "roles": []string{"admin"}}},
	})
	w.conn = str(out, "id")
	w.app = registerApp(h)
	idp.SetUser(map[string]any{"sub": "okta|alice", "email": "alice@acme.example", "email_verified": true, "name": "Alice", "groups": []string{"admins"}})
	return w
}

// signIn runs the browser flow from the app's link to its redirect endpoint
// and returns the code (or fails).
func (w *ssoWorld) signIn(b *browser, extra url.Values) (code, verifier string) {
	w.h.t.Helper()
	verifier, challenge := pkce()
	u, status, body := b.get(w.app.authorizeURL("app-state", challenge, extra))
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		w.h.t.Fatalf("sign-in ended at %s with %d (%s): %.400s", u, status, pageCode(body), body)
	}
	got := w.app.last()
	if got.Get("state") != "app-state" || got.Get("code") == "" {
		w.h.t.Fatalf("app received %v, want its state and a code", got)
	}
	return got.Get("code"), verifier
}

func (w *ssoWorld) exchange(code, verifier string) (int, map[string]any) {
	return w.app.tokenCall(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {w.app.redirect}, "code_verifier": {verifier}})
}

func (w *ssoWorld) refresh(rt string) (int, map[string]any) {
	return w.app.tokenCall(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// TestSSOSignInThroughOrgIdP: an app signs a user of acme in through acme's
// OIDC IdP: JIT creates the user and membership with mapped roles; the
// tokens carry org, org_slug and org_roles; refresh rotates with reuse
// detection; removing the membership ends refresh and introspection at once.
func TestSSOSignInThroughOrgIdP(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	code, verifier := w.signIn(newBrowser(t), url.Values{"login_hint": {"alice@acme.example"}})

	// PKCE: the wrong verifier is refused
	if status, out := w.exchange(code, verifier+"x"); status != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("exchange with the wrong code_verifier: %d %v, want 400 invalid_grant", status, out)
	}
	status, tok := w.exchange(code, verifier)
	if status != 200 {
		t.Fatalf("token exchange: %d %v", status, tok)
	}
	id := w.app.verifyIDToken(str(tok, "id_token"))
	user := str(id, "sub")
	if id["org"] != w.org || id["org_slug"] != "acme" || id["email"] != "alice@acme.example" || id["nonce"] != "app-nonce" {
		t.Fatalf("id_token claims %v: want org %s, org_slug acme, email, nonce", id, w.org)
	}
	if roles := strs(id["org_roles"]); !slices.Contains(roles, "admin") {
		t.Fatalf("org_roles %v, want admin (mapped from groups)", roles)
	}
	at := jwtClaims(t, str(tok, "access_token"))
	if at["org"] != w.org || at["sub"] != user {
		t.Fatalf("access token claims %v", at)
	}
	if exp, iat := at["exp"].(float64), at["iat"].(float64); exp-iat > 15*60 {
		t.Fatalf("access token lives %v s, want ≤ 15 min", exp-iat)
	}
	m := h.provider().do(200, "GET", "/v1/organizations/acme/members/"+user, nil)
	if m["authenticatedVia"] != "sso:"+w.conn || !slices.Contains(strs(m["roles"]), "admin") {
		t.Fatalf("membership %v: want authenticatedVia sso:%s and role admin", m, w.conn)
	}
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != true || in["org"] != w.org {
		t.Fatalf("introspection %v, want active with org", in)
	}

	// refresh rotates; the spent token presented again revokes the family
	rt1 := str(tok, "refresh_token")
	status, tok2 := w.refresh(rt1)
	if status != 200 || str(tok2, "refresh_token") == rt1 {
		t.Fatalf("refresh: %d %v, want a new refresh token", status, tok2)
	}
	if status, out := w.refresh(rt1); status != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token reused: %d %v, want 400 invalid_grant", status, out)
	}
	if status, _ := w.refresh(str(tok2, "refresh_token")); status != 400 {
		t.Fatalf("after reuse, the rotated refresh token still works (%d): the family must be revoked", status)
	}
	if in := w.app.introspect(str(tok2, "access_token")); in["active"] != false {
		t.Fatalf("after reuse, the family's access token introspects %v, want inactive", in)
	}

	// a second sign-in re-maps only the connection's roles: the IdP drops
	// the admins group; a role an admin gave by hand stays
	h.provider().do(200, "PUT", "/v1/organizations/acme/members/"+user, map[string]any{"roles": []string{"admin", "member"}})
	w.idp.SetUser(map[string]any{"sub": "okta|alice", "email": "alice@acme.example", "email_verified": true, "groups": []string{}})
	code, verifier = w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	status, tok = w.exchange(code, verifier)
	if status != 200 {
		t.Fatalf("second exchange: %d %v", status, tok)
	}
	if roles := strs(jwtClaims(t, str(tok, "access_token"))["org_roles"]); slices.Contains(roles, "admin") || !slices.Contains(roles, "member") {
		t.Fatalf("re-mapped org_roles %v: want admin gone (the IdP dropped it), member kept (manual)", roles)
	}

	// deprovisioning: removing the membership ends refresh and introspection at once
	h.provider().do(204, "DELETE", "/v1/organizations/acme/members/"+user, nil)
	if status, out := w.refresh(str(tok, "refresh_token")); status != 400 {
		t.Fatalf("refresh after removal: %d %v, want 400", status, out)
	}
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
		t.Fatalf("introspection after removal: %v, want inactive", in)
	}
	// and JIT does not recreate a membership an admin removed
	_, status2, body := newBrowser(t).get(w.app.authorizeURL("s", "x"+strings.Repeat("c", 42), url.Values{"organization": {"acme"}}))
	if status2 != 403 || pageCode(body) != "membership_removed" {
		t.Fatalf("sign-in after removal: %d %q, want 403 membership_removed", status2, pageCode(body))
	}
	wantAudit(t, h, "acme", "sso.signin", "sso.signin.refused", "oauth.token.issue", "oauth.token.refresh", "oauth.refresh.reuse", "connection.create")
}

// wantAudit fails unless org's audit log holds each action.
func wantAudit(t *testing.T, h *harness, org string, actions ...string) {
	t.Helper()
	out := h.provider().do(200, "GET", "/v1/organizations/"+org+"/audit?pageSize=1000", nil)
	seen := map[string]bool{}
	for _, e := range out["events"].([]any) {
		seen[e.(map[string]any)["action"].(string)] = true
	}
	for _, a := range actions {
		if !seen[a] {
			t.Errorf("audit of %s has no %s event (has %v)", org, a, seen)
		}
	}
}
