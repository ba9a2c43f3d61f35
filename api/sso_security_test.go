package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trellis-iam/trellis/federation/idptest"
)

// refusedSignIn runs a sign-in that must end on Trellis's refusal page with
// code, and checks that no user was created for email.
func (w *ssoWorld) refusedSignIn(t *testing.T, b *browser, extra url.Values, status int, code, email string) {
	t.Helper()
	_, challenge := pkce()
	u, got, body := b.get(w.app.authorizeURL("st", challenge, extra))
	if got != status || pageCode(body) != code {
		t.Fatalf("sign-in ended at %s with %d %q, want %d %q: %.300s", u.Path, got, pageCode(body), status, code, body)
	}
	if strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("a refused sign-in reached the app")
	}
	if email != "" {
		out := w.h.provider().do(200, "GET", "/v1/users?email="+url.QueryEscape(email), nil)
		if n := len(out["users"].([]any)); n != 0 {
			t.Fatalf("a refused sign-in created %d users %v", n, out)
		}
	}
}

// refusals counts the refused sign-ins audited on org.
func refusals(h *harness, org string) int {
	out := h.provider().do(200, "GET", "/v1/organizations/"+org+"/audit?pageSize=1000&action=sso.signin.refused", nil)
	return len(out["events"].([]any))
}

// TestSSOOIDCSecurityCases: every way a customer IdP's answer can be forged
// or misdirected ends in a refused sign-in, an audit event and nothing created.
func TestSSOOIDCSecurityCases(t *testing.T) {
	w := newSSOWorld(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	mallory := map[string]any{"sub": "okta|mallory", "email": "mallory@acme.example", "email_verified": true, "groups": []string{"admins"}}
	cases := []struct {
		name string
		mint func(o *idptest.OIDC, c map[string]any) string
	}{
		{"alg none", func(_ *idptest.OIDC, c map[string]any) string { return idptest.Unsigned(c) }},
		{"HS256 keyed with the public key", func(o *idptest.OIDC, c map[string]any) string { return o.HS256WithPublicKey(c) }},
		{"unknown kid", func(o *idptest.OIDC, c map[string]any) string {
			return o.SignWith(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: other, KeyID: "k2"}}, c)
		}},
		{"wrong signature under the right kid", func(o *idptest.OIDC, c map[string]any) string {
			return o.SignWith(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: other, KeyID: o.KID}}, c)
		}},
		{"issuer mix-up", func(o *idptest.OIDC, c map[string]any) string {
			c["iss"] = "https://idp.evil.example"
			return o.Sign(c)
		}},
		{"wrong audience", func(o *idptest.OIDC, c map[string]any) string { c["aud"] = "another-client"; return o.Sign(c) }},
		{"expired", func(o *idptest.OIDC, c map[string]any) string {
			c["exp"], c["iat"] = time.Now().Add(-10*time.Minute).Unix(), time.Now().Add(-20*time.Minute).Unix()
			return o.Sign(c)
		}},
		{"missing nonce", func(o *idptest.OIDC, c map[string]any) string { delete(c, "nonce"); return o.Sign(c) }},
		{"mismatched nonce", func(o *idptest.OIDC, c map[string]any) string { c["nonce"] = "replayed"; return o.Sign(c) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.idp.SetUser(mallory)
			w.idp.SetMint(tc.mint)
			defer w.idp.SetMint(nil)
			before := refusals(w.h, "acme")
			w.refusedSignIn(t, newBrowser(t), url.Values{"login_hint": {"mallory@acme.example"}}, 403, "invalid_assertion", "mallory@acme.example")
			if refusals(w.h, "acme") != before+1 {
				t.Fatalf("the refusal was not audited")
			}
		})
	}

	t.Run("state answered in another browser", func(t *testing.T) {
		w.idp.SetUser(mallory)
		victim := newBrowser(t)
		var callback string
		victim.client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
			if req.URL.Path == "/sso/oidc/callback" {
				callback = req.URL.String()
				return errors.New("stop")
			}
			return nil
		}
		_, challenge := pkce()
		_, _ = victim.client.Get(w.app.authorizeURL("st", challenge, url.Values{"login_hint": {"mallory@acme.example"}}))
		if callback == "" {
			t.Fatal("the flow never reached the callback")
		}
		before := refusals(w.h, "acme")
		_, status, body := newBrowser(t).get(callback) // the attacker's browser, without the login cookie
		if status != 400 || pageCode(body) != "browser_mismatch" {
			t.Fatalf("callback in another browser: %d %q, want 400 browser_mismatch", status, pageCode(body))
		}
		if refusals(w.h, "acme") != before+1 {
			t.Fatal("not audited")
		}
		// and the state is spent: the victim's own browser cannot use it either
		victim.client.CheckRedirect = nil
		if _, status, body := victim.get(callback); status != 400 || pageCode(body) != "unknown_state" {
			t.Fatalf("state reused: %d %q, want 400 unknown_state", status, pageCode(body))
		}
		out := w.h.provider().do(200, "GET", "/v1/users?email=mallory%40acme.example", nil)
		if len(out["users"].([]any)) != 0 {
			t.Fatal("a user was created")
		}
	})

	t.Run("the code goes only to the browser that signed in", func(t *testing.T) {
		w.idp.SetUser(map[string]any{"sub": "okta|alice", "email": "alice@acme.example", "email_verified": true})
		victim := newBrowser(t)
		var complete string
		victim.client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
			if req.URL.Path == "/sso/authorize/callback" {
				complete = req.URL.String()
				return errors.New("stop")
			}
			return nil
		}
		_, challenge := pkce()
		_, _ = victim.client.Get(w.app.authorizeURL("victim-state", challenge, url.Values{"organization": {"acme"}}))
		if complete == "" {
			t.Fatal("the flow never reached the completion step")
		}
		if _, status, body := newBrowser(t).get(complete); status != 400 || pageCode(body) != "browser_mismatch" {
			t.Fatalf("completion in another browser: %d %q, want 400 browser_mismatch", status, pageCode(body))
		}
		victim.client.CheckRedirect = nil
		if u, status, _ := victim.get(complete); status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) || w.app.last().Get("state") != "victim-state" {
			t.Fatalf("the victim's own completion: %s %d", u, status)
		}
	})

	t.Run("missing or unknown state", func(t *testing.T) {
		for _, q := range []string{"?code=x", "?code=x&state=forged"} {
			if _, status, body := newBrowser(t).get(w.h.url + "/sso/oidc/callback" + q); status != 400 || pageCode(body) == "" {
				t.Fatalf("callback %s: %d %q, want 400 with a code", q, status, pageCode(body))
			}
		}
	})

	t.Run("open redirect through redirect_uri", func(t *testing.T) {
		_, challenge := pkce()
		for _, evil := range []string{"https://evil.example/cb", w.app.redirect + "/../../evil", w.app.redirect + "?x=1", strings.ToUpper(w.app.redirect)} {
			u := strings.Replace(w.app.authorizeURL("st", challenge, nil), url.QueryEscape(w.app.redirect), url.QueryEscape(evil), 1)
			final, status, _ := newBrowser(t).get(u)
			if status < 400 || final.Host != strings.TrimPrefix(w.h.url, "http://") {
				t.Fatalf("redirect_uri %q: ended at %s with %d, want an error page at Trellis", evil, final, status)
			}
		}
	})

	t.Run("PKCE required", func(t *testing.T) {
		u := strings.Replace(w.app.authorizeURL("st", "c", nil), "code_challenge=c", "", 1)
		u = strings.Replace(u, "code_challenge_method=S256", "", 1)
		final, status, _ := newBrowser(t).get(u)
		if !strings.HasPrefix(final.String(), w.app.redirect) || w.app.last().Get("error") != "invalid_request" {
			t.Fatalf("authorize without PKCE: %s %d, app got %v; want invalid_request", final, status, w.app.last())
		}
	})

	t.Run("authorization code reuse revokes the first exchange's tokens", func(t *testing.T) {
		w.idp.SetUser(map[string]any{"sub": "okta|alice", "email": "alice@acme.example", "email_verified": true})
		code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
		status, tok := w.exchange(code, verifier)
		if status != 200 {
			t.Fatalf("exchange: %d %v", status, tok)
		}
		if status, out := w.exchange(code, verifier); status != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("second exchange: %d %v, want 400 invalid_grant", status, out)
		}
		if in := w.app.introspect(str(tok, "access_token")); in["active"] != false {
			t.Fatalf("first exchange's access token after reuse: %v, want inactive", in)
		}
		if status, _ := w.refresh(str(tok, "refresh_token")); status != 400 {
			t.Fatalf("first exchange's refresh token after reuse: %d, want 400", status)
		}
	})

	t.Run("nOAuth: an existing user is never linked by an unverified email", func(t *testing.T) {
		bob := createUser(w.h, "bob@acme.example")
		w.idp.SetUser(map[string]any{"sub": "okta|attacker", "email": "bob@acme.example", "email_verified": false})
		before := refusals(w.h, "acme")
		w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "unlinked_email", "")
		if refusals(w.h, "acme") != before+1 {
			t.Fatal("not audited")
		}
		if got, _ := w.h.call("GET", "/v1/organizations/acme/members/"+bob, nil); got != 404 {
			t.Fatalf("bob became a member (%d)", got)
		}
		// a verified email of a domain the organization did not verify does not link either
		createUser(w.h, "carol@elsewhere.example")
		w.idp.SetUser(map[string]any{"sub": "okta|carol", "email": "carol@elsewhere.example", "email_verified": true})
		w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "unlinked_email", "")
		// with the email verified and the domain verified by acme, it links
		w.idp.SetUser(map[string]any{"sub": "okta|bob", "email": "bob@acme.example", "email_verified": true})
		code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
		if status, tok := w.exchange(code, verifier); status != 200 || jwtClaims(t, str(tok, "access_token"))["sub"] != bob {
			t.Fatalf("verified link: %d %v, want bob's tokens", status, tok)
		}
	})

	t.Run("required acr: step-up refused", func(t *testing.T) {
		w.h.provider().do(200, "PATCH", "/v1/applications/"+w.app.id, map[string]any{"requiredAcr": "phr"})
		defer w.h.provider().do(200, "PATCH", "/v1/applications/"+w.app.id, map[string]any{"requiredAcr": ""})
		w.idp.SetUser(map[string]any{"sub": "okta|dave", "email": "dave@acme.example", "email_verified": true, "acr": "pwd"})
		w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "acr_insufficient", "dave@acme.example")
	})

	t.Run("suspended organization", func(t *testing.T) {
		w.idp.SetUser(map[string]any{"sub": "okta|erin", "email": "erin@acme.example", "email_verified": true})
		w.h.provider().do(200, "PATCH", "/v1/organizations/acme", map[string]any{"status": "suspended"})
		defer w.h.provider().do(200, "PATCH", "/v1/organizations/acme", map[string]any{"status": "active"})
		w.refusedSignIn(t, newBrowser(t), url.Values{"organization": {"acme"}}, 403, "organization_suspended", "erin@acme.example")
	})
}
