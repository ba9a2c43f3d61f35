package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// resign signs claims with a fresh key under kid: a forgery of a Trellis token.
func resign(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	return h
}

// TestTokenProviderAccessTokenAtAPI: an access token of Trellis's OpenID
// provider authenticates calls to the Trellis API as its user in its
// organization; forged, tampered, ID and expired tokens do not; revocation
// takes effect at once.
func TestTokenProviderAccessTokenAtAPI(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	createOrg(h, testKey, "Globex", "globex", "")
	// a token the app did not ask to use at the Trellis API is its own alone
	code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
	status, tok := w.exchange(code, verifier)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	h.as(str(tok, "access_token")).fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
	code, verifier = w.signIn(newBrowser(t), apiScope("organization", "acme"))
	status, tok = w.exchange(code, verifier)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	at := str(tok, "access_token")
	alice := h.as(at)
	members := alice.do(200, "GET", "/v1/organizations/acme/members", nil) // alice is acme's admin (groups → admin)
	if len(items(t, members, "members")) != 1 {
		t.Fatalf("members: %v", members)
	}
	alice.fails(404, "not_found", "", "GET", "/v1/organizations/globex", nil)
	alice.fails(403, "forbidden", "", "GET", "/v1/schema", nil)

	// the JWT alone is not trusted: an ID token, a tampered or re-signed token
	h.as(str(tok, "id_token")).fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
	claims := jwtClaims(t, at)
	parts := strings.Split(at, ".")
	claims["org_roles"] = []string{"admin", "owner"}
	forgedPayload, _ := json.Marshal(claims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forgedPayload) + "." + parts[2]
	h.as(tampered).fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
	h.as(resign(t, jwtHeader(t, at)["kid"].(string), claims)).fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
	h.as(resign(t, "unknown-kid", claims)).fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)

	// revoking the grant (its refresh token) ends the access token at once
	form := url.Values{"token": {str(tok, "refresh_token")}}
	req, _ := http.NewRequest("POST", h.url+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(w.app.clientID), url.QueryEscape(w.app.secret))
	if status, out := doJSON(t, req); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	alice.fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)

	// deprovisioning: a suspended membership ends the next sign-in's token at once
	code, verifier = w.signIn(newBrowser(t), apiScope("organization", "acme"))
	_, tok = w.exchange(code, verifier)
	again := h.as(str(tok, "access_token"))
	again.do(200, "GET", "/v1/organizations/acme/members", nil)
	user := str(items(t, members, "members")[0], "user")
	h.provider().do(200, "PUT", "/v1/organizations/acme/members/"+user, map[string]any{"roles": []string{"admin"}, "status": "suspended"})
	again.fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
	h.provider().do(200, "PUT", "/v1/organizations/acme/members/"+user, map[string]any{"roles": []string{"admin"}, "status": "active"})
	again.do(200, "GET", "/v1/organizations/acme/members", nil)
	// and expiry
	h.clock.Advance(16 * time.Minute)
	again.fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/members", nil)
}

// TestTokenClientCredentialsAtAPI: a service account's client-credentials
// token acts at the Trellis API as its key would, limited to its scopes, and
// stops when the account is deleted.
func TestTokenClientCredentialsAtAPI(t *testing.T) {
	w := newSSOWorld(t)
	h := w.h
	createOrg(h, testKey, "Globex", "globex", "")
	sa := newServiceAccount(h, "acme", []string{"admin"}, []string{"manage_members", "view_audit"})
	status, tok := clientCredentials(h, sa.keyID, sa.key, true, "view_audit")
	if status != 200 {
		t.Fatalf("client credentials: %d %v", status, tok)
	}
	bot := h.as(str(tok, "access_token"))
	bot.do(200, "GET", "/v1/organizations/acme/audit", nil)
	x := createUser(h, "xena@acme.example")
	bot.fails(403, "forbidden", "", "PUT", "/v1/organizations/acme/members/"+x, map[string]any{"roles": []string{"member"}})
	bot.fails(404, "not_found", "", "GET", "/v1/organizations/globex/audit", nil)

	_, wide := clientCredentials(h, sa.keyID, sa.key, true, "")
	h.as(str(wide, "access_token")).do(201, "PUT", "/v1/organizations/acme/members/"+x, map[string]any{"roles": []string{"member"}})

	h.provider().do(204, "DELETE", sa.saPath, nil)
	bot.fails(401, "unauthenticated", "", "GET", "/v1/organizations/acme/audit", nil)
}

// apiScope is a sign-in's extra parameters asking for the Trellis API scope.
func apiScope(kv ...string) url.Values {
	v := url.Values{"scope": {"openid email profile offline_access trellis:api"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}
