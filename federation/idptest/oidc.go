// Package idptest is an OpenID Connect identity provider for tests: it serves
// discovery, a JWKS, an authorization endpoint that signs the configured user
// in at once, and a token endpoint that checks the client and PKCE. Tests set
// Mint to make it misbehave (alg none, HS256 with the public key, an unknown
// kid, another issuer or audience, an expired token, a wrong nonce).
package idptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// OIDC is a running test IdP.
type OIDC struct {
	*httptest.Server
	Key          *rsa.PrivateKey
	KID          string
	ClientID     string
	ClientSecret string

	mu sync.Mutex
	// User are the claims of who signs in (sub, email, email_verified, name, groups…).
	User map[string]any
	// Mint, when set, builds the id_token instead of the honest signer; it
	// gets the claims the IdP would sign.
	Mint  func(o *OIDC, claims map[string]any) string
	codes map[string]grant
	// Requests counts authorization requests.
	Requests int
}

type grant struct {
	nonce, challenge, redirect string
	user                       map[string]any
}

// NewOIDC starts an IdP with a fresh RSA key and a client.
func NewOIDC() *OIDC {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	o := &OIDC{Key: key, KID: "k1", ClientID: "trellis-client", ClientSecret: "s3cret", codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", o.discovery)
	mux.HandleFunc("/jwks", o.jwks)
	mux.HandleFunc("/authorize", o.authorize)
	mux.HandleFunc("/token", o.token)
	o.Server = httptest.NewServer(mux)
	return o
}

// SetUser sets who signs in next.
func (o *OIDC) SetUser(claims map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.User = claims
}

// SetMint sets (or clears, with nil) the misbehaving id_token builder.
func (o *OIDC) SetMint(m func(o *OIDC, claims map[string]any) string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.Mint = m
}

func (o *OIDC) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer": o.URL, "authorization_endpoint": o.URL + "/authorize", "token_endpoint": o.URL + "/token",
		"jwks_uri": o.URL + "/jwks", "response_types_supported": []string{"code"},
		"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (o *OIDC) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &o.Key.PublicKey, KeyID: o.KID, Algorithm: "RS256", Use: "sig"}}})
}

func (o *OIDC) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != o.ClientID || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := randomString()
	o.mu.Lock()
	o.Requests++
	o.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), user: o.User}
	o.mu.Unlock()
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := u.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (o *OIDC) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != o.ClientID || secret != o.ClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	o.mu.Lock()
	g, found := o.codes[r.PostForm.Get("code")]
	delete(o.codes, r.PostForm.Get("code"))
	mint := o.Mint
	o.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !found || g.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "invalid_grant"})
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": o.URL, "aud": o.ClientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	for k, v := range g.user {
		claims[k] = v
	}
	var idToken string
	if mint != nil {
		idToken = mint(o, claims)
	} else {
		idToken = o.Sign(claims)
	}
	writeJSON(w, map[string]any{"access_token": randomString(), "token_type": "Bearer", "expires_in": 300, "id_token": idToken})
}

// Sign signs claims with the IdP's RSA key (RS256, its kid).
func (o *OIDC) Sign(claims map[string]any) string {
	return o.SignWith(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: o.Key, KeyID: o.KID}}, claims)
}

// SignWith signs claims with any key.
func (o *OIDC) SignWith(key jose.SigningKey, claims map[string]any) string {
	s, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		panic(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

// Unsigned builds a token with alg "none" (no signature).
func Unsigned(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
}

// HS256WithPublicKey signs claims with HMAC-SHA256 keyed by the IdP's public
// key in PEM-less DER form: the algorithm-confusion attack.
func (o *OIDC) HS256WithPublicKey(claims map[string]any) string {
	pub, _ := json.Marshal(jose.JSONWebKey{Key: &o.Key.PublicKey})
	return o.SignWith(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: pub, KeyID: o.KID}}, claims)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func randomString() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return strings.TrimRight(base64.RawURLEncoding.EncodeToString(b[:]), "=")
}
