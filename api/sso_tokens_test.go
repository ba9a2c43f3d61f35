package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSSOUserinfoRevocationAndLogout: userinfo answers with the organization
// claims; revoking a refresh token (RFC 7009) ends its grant; RP-initiated
// logout ends the user's grants with the application.
func TestSSOUserinfoRevocationAndLogout(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	h.provider().do(200, "PATCH", "/v1/applications/"+w.app.id, map[string]any{"postLogoutRedirectUris": []string{w.app.redirect + "/bye"}})
	signIn := func() map[string]any {
		code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
		status, tok := w.exchange(code, verifier)
		if status != 200 {
			t.Fatalf("exchange: %d %v", status, tok)
		}
		return tok
	}

	tok := signIn()
	req, _ := http.NewRequest("GET", h.url+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+str(tok, "access_token"))
	status, info := doJSON(t, req)
	if status != 200 || info["org"] != w.org || info["email"] != "alice@acme.example" {
		t.Fatalf("userinfo: %d %v", status, info)
	}

	form := url.Values{"token": {str(tok, "refresh_token")}, "token_type_hint": {"refresh_token"}}
	req, _ = http.NewRequest("POST", h.url+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(w.app.clientID), url.QueryEscape(w.app.secret))
	if status, out := doJSON(t, req); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if status, _ := w.refresh(str(tok, "refresh_token")); status != 400 {
		t.Fatalf("refresh after revocation: %d, want 400", status)
	}
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
		t.Fatalf("access token of a revoked grant: %v, want inactive", in)
	}

	tok = signIn()
	q := url.Values{"id_token_hint": {str(tok, "id_token")}, "post_logout_redirect_uri": {w.app.redirect + "/bye"}, "state": {"out"}}
	u, status, _ := newBrowser(t).get(h.url + "/oauth2/logout?" + q.Encode())
	if status != 200 || u.Path != "/cb/bye" || u.Query().Get("state") != "out" {
		t.Fatalf("logout ended at %s %d, want the registered post-logout URI with its state", u, status)
	}
	if status, _ := w.refresh(str(tok, "refresh_token")); status != 400 {
		t.Fatalf("refresh after logout: %d, want 400", status)
	}
	wantAudit(t, h, "acme", "oauth.token.revoke")
}
