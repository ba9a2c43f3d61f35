package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// serviceAccount is a service account of acme with an API key: its OAuth
// 2.0 client credentials.
type serviceAccount struct {
	h            *harness
	id, keyID    string
	key, saPath  string
	organization string
}

func newServiceAccount(h *harness, org string, roles, perms []string) *serviceAccount {
	h.t.Helper()
	base := "/v1/organizations/" + org + "/service-accounts"
	sa := h.provider().do(201, "POST", base, map[string]any{"name": "ci-bot", "roles": roles})
	k := h.provider().do(201, "POST", base+"/"+str(sa, "id")+"/keys", map[string]any{"permissions": perms})
	return &serviceAccount{h: h, id: str(sa, "id"), keyID: str(k, "id"), key: str(k, "key"), saPath: base + "/" + str(sa, "id"), organization: str(sa, "organization")}
}

// clientCredentials asks /oauth2/token for a token: basic (client_secret_basic)
// or in the form (client_secret_post).
func clientCredentials(h *harness, id, secret string, basic bool, scope string) (int, map[string]any) {
	h.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	if !basic {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, _ := http.NewRequest("POST", h.url+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return doJSON(h.t, req)
}

// auditCount counts org's audit events of action.
func auditCount(h *harness, org, action string) int {
	h.t.Helper()
	n := 0
	for _, e := range h.provider().do(200, "GET", "/v1/organizations/"+org+"/audit?pageSize=1000", nil)["events"].([]any) {
		if e.(map[string]any)["action"] == action {
			n++
		}
	}
	return n
}

// TestTokenClientCredentials: a service account's key obtains an access
// token (RFC 6749 §4.4) by client_secret_basic and client_secret_post, with
// sub, org and the scopes it holds; the token is short, introspectable by
// the registered applications, revocable, and inactive once its key or
// account is gone.
func TestTokenClientCredentials(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	sa := newServiceAccount(h, "acme", []string{"admin"}, []string{"manage_members", "view_audit"})

	status, tok := clientCredentials(h, sa.keyID, sa.key, true, "")
	if status != 200 || tok["token_type"] != "Bearer" || str(tok, "access_token") == "" {
		t.Fatalf("client credentials (basic): %d %v", status, tok)
	}
	if exp, _ := tok["expires_in"].(float64); exp <= 0 || exp > 15*60 {
		t.Fatalf("expires_in %v, want at most 15 minutes", tok["expires_in"])
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Fatalf("client credentials returned a refresh token: %v", tok)
	}
	claims := jwtClaims(t, str(tok, "access_token"))
	wantEqual(t, "claims", []any{claims["sub"], claims["org"], claims["scope"], claims["iss"]},
		[]any{"service_account:" + sa.id, w.org, "manage_members view_audit", h.url})

	// the secret part alone, in the form, narrowed to one scope it holds
	secret := strings.TrimPrefix(sa.key, "trk."+sa.keyID+".")
	status, narrow := clientCredentials(h, sa.keyID, secret, false, "view_audit")
	if status != 200 || jwtClaims(t, str(narrow, "access_token"))["scope"] != "view_audit" {
		t.Fatalf("client credentials (post, scope view_audit): %d %v", status, narrow)
	}

	in := w.app.introspect(str(tok, "access_token"))
	wantEqual(t, "introspection", []any{in["active"], in["sub"], in["org"], in["client_id"], in["scope"]},
		[]any{true, "service_account:" + sa.id, w.org, sa.keyID, "manage_members view_audit"})
	wantAudit(t, h, "acme", "oauth.token.issue")

	// RFC 7009: the key revokes its own token
	form := url.Values{"token": {str(tok, "access_token")}}
	req, _ := http.NewRequest("POST", h.url+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(sa.keyID), url.QueryEscape(sa.key))
	if status, out := doJSON(t, req); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
		t.Fatalf("revoked token: %v, want inactive", in)
	}
	if in := w.app.introspect(str(narrow, "access_token")); in["active"] != true {
		t.Fatalf("the other token: %v, want still active", in)
	}

	// revoking the key ends its tokens at once
	h.provider().do(204, "DELETE", sa.saPath+"/keys/"+sa.keyID, nil)
	if in := w.app.introspect(str(narrow, "access_token")); in["active"] != false {
		t.Fatalf("token of a revoked key: %v, want inactive", in)
	}

	// deleting the account ends its tokens at once
	other := newServiceAccount(h, "acme", []string{"member"}, []string{"access"})
	_, tok = clientCredentials(h, other.keyID, other.key, true, "")
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != true {
		t.Fatalf("fresh token: %v", in)
	}
	h.provider().do(204, "DELETE", other.saPath, nil)
	if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
		t.Fatalf("token of a deleted account: %v, want inactive", in)
	}
}

// TestTokenClientCredentialsRefused: a wrong secret, a revoked key, a scope
// the key does not hold, a suspended organization and an application's own
// credentials are refused; each refusal naming a key is audited, and none
// issues a token.
func TestTokenClientCredentialsRefused(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	sa := newServiceAccount(h, "acme", []string{"member"}, []string{"access"})
	issued := auditCount(h, "acme", "oauth.token.issue")

	cases := []struct {
		name, id, secret, scope string
		basic                   bool
		status                  int
		code                    string
		audited                 bool
	}{
		{"wrong secret", sa.keyID, "trk." + sa.keyID + ".not-the-secret", "", true, 401, "invalid_client", true},
		{"wrong secret part (post)", sa.keyID, "not-the-secret", "", false, 401, "invalid_client", true},
		{"another key's id", "key_nosuchkey", sa.key, "", true, 401, "invalid_client", false},
		{"scope not held", sa.keyID, sa.key, "access manage_members", true, 400, "invalid_scope", true},
		{"openid is no scope of a key", sa.keyID, sa.key, "openid", false, 400, "invalid_scope", true},
		{"an application's credentials", w.app.clientID, w.app.secret, "", true, 401, "invalid_client", false},
	}
	for _, c := range cases {
		before := auditCount(h, "acme", "oauth.client_credentials.denied")
		status, out := clientCredentials(h, c.id, c.secret, c.basic, c.scope)
		if status != c.status || out["error"] != c.code || out["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d %s and no token", c.name, status, out, c.status, c.code)
		}
		if got := auditCount(h, "acme", "oauth.client_credentials.denied") - before; (got == 1) != c.audited {
			t.Errorf("%s: %d denial events, want audited=%v", c.name, got, c.audited)
		}
	}

	// a suspended organization's accounts get no token
	h.provider().do(200, "PATCH", "/v1/organizations/acme", map[string]any{"status": "suspended"})
	before := auditCount(h, "acme", "oauth.client_credentials.denied")
	if status, out := clientCredentials(h, sa.keyID, sa.key, true, ""); status/100 != 4 || out["access_token"] != nil {
		t.Errorf("suspended organization: %d %v, want a refusal", status, out)
	}
	if auditCount(h, "acme", "oauth.client_credentials.denied") != before+1 {
		t.Errorf("suspended organization: refusal not audited")
	}
	h.provider().do(200, "PATCH", "/v1/organizations/acme", map[string]any{"status": "active"})

	// a revoked key
	h.provider().do(204, "DELETE", sa.saPath+"/keys/"+sa.keyID, nil)
	if status, out := clientCredentials(h, sa.keyID, sa.key, true, ""); status != 401 || out["access_token"] != nil {
		t.Errorf("revoked key: %d %v, want 401", status, out)
	}
	// an expiring key's token ends with the key
	exp := h.clock.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)
	k := h.provider().do(201, "POST", sa.saPath+"/keys", map[string]any{"permissions": []string{"access"}, "expiresAt": exp})
	status, out := clientCredentials(h, str(k, "id"), str(k, "key"), true, "")
	if got, _ := out["expires_in"].(float64); status != 200 || got > 5*60+1 {
		t.Errorf("token of a key expiring in 5 minutes: %d expires_in %v", status, out["expires_in"])
	}
	if got := auditCount(h, "acme", "oauth.token.issue"); got != issued+1 {
		t.Errorf("oauth.token.issue events: %d, want %d (only the expiring key's token)", got, issued+1)
	}
}
