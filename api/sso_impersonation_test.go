package api_test

import (
	"net/url"
	"strings"
	"testing"
)

// impersonationSignIn runs an app's sign-in that support staff complete with
// an impersonation token; it returns where the browser ended, its status and
// body.
func (w *ssoWorld) impersonationSignIn(b *browser, token string) (*url.URL, int, string, string) {
	w.h.t.Helper()
	verifier, challenge := pkce()
	u, status, _ := b.get(w.app.authorizeURL("app-state", challenge, apiScope())) // its token is also used at the Trellis API
	id := u.Query().Get("authRequestID")
	if status != 200 || u.Path != "/sso/login" || id == "" {
		w.h.t.Fatalf("the sign-in without a hint ended at %s %d, want the email page", u, status)
	}
	u, status, body := b.post(w.h.url+"/sso/login", url.Values{"authRequestID": {id}, "impersonation_token": {token}})
	return u, status, body, verifier
}

// TestSSOImpersonationActClaim: an impersonator signs in to an app as its
// target; the access token, the ID token and introspection carry act (RFC
// 8693 §4.1) naming the actor; no refresh token; everything ends with the
// impersonation. An ended impersonation and a plain user token are refused,
// audited, and issue no code.
func TestSSOImpersonationActClaim(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	gary, bob := createUser(h, "gary@acme.example"), createUser(h, "bob@acme.example")
	putMember(h, testKey, w.org, gary, "admin")
	putMember(h, testKey, w.org, bob, "member")
	ga := h.as(h.token(gary, w.org))
	imp := impersonate(ga, "", bob, "acme", "read-only")
	impToken := impersonationToken(ga, imp)

	u, status, body, verifier := w.impersonationSignIn(newBrowser(t), impToken)
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("impersonation sign-in ended at %s %d (%s)", u, status, pageCode(body))
	}
	status, tok := w.exchange(w.app.last().Get("code"), verifier)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Errorf("an impersonation grant got a refresh token: %v", tok)
	}
	at := jwtClaims(t, str(tok, "access_token"))
	act, _ := at["act"].(map[string]any)
	wantEqual(t, "access token", []any{at["sub"], at["org"], act["sub"]}, []any{bob, w.org, gary})
	id := w.app.verifyIDToken(str(tok, "id_token"))
	act, _ = id["act"].(map[string]any)
	wantEqual(t, "id token", []any{id["sub"], id["org"], act["sub"]}, []any{bob, w.org, gary})
	in := w.app.introspect(str(tok, "access_token"))
	act, _ = in["act"].(map[string]any)
	wantEqual(t, "introspection", []any{in["active"], in["sub"], act["sub"]}, []any{true, bob, gary})
	wantAudit(t, h, "acme", "sso.signin")

	// at the Trellis API it acts as the impersonation: read-only, inside acme
	api := h.as(str(tok, "access_token"))
	api.do(200, "GET", "/v1/organizations/acme", nil)
	api.fails(403, "forbidden", "", "PATCH", "/v1/organizations/acme", map[string]any{"name": "Renamed"})

	ga.do(200, "POST", "/v1/impersonations/"+imp+"/end", nil)
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
		t.Fatalf("after the impersonation ended: %v, want inactive", in)
	}
	api.fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme", nil)

	// refusals: the ended impersonation's token, a plain user token
	for _, c := range []struct{ name, token, code string }{
		{"ended impersonation", impToken, "impersonation_not_live"},
		{"plain user token", h.token(gary, w.org), "not_an_impersonation"},
	} {
		before := auditCount(h, "acme", "sso.signin.refused")
		u, status, body, _ := w.impersonationSignIn(newBrowser(t), c.token)
		if status != 403 || pageCode(body) != c.code || strings.HasPrefix(u.String(), w.app.redirect) {
			t.Errorf("%s: ended at %s %d (%s), want 403 %s", c.name, u, status, pageCode(body), c.code)
		}
		if auditCount(h, "acme", "sso.signin.refused") != before+1 {
			t.Errorf("%s: refusal not audited", c.name)
		}
	}
	if _, status, body, _ := w.impersonationSignIn(newBrowser(t), "not-a-token"); status != 401 || pageCode(body) != "invalid_token" {
		t.Errorf("garbage token: %d %s, want 401 invalid_token", status, pageCode(body))
	}
}
