package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/goleak"

	trellis "github.com/trellis-iam/trellis"
)

// TestMain checks for leaked goroutines, except the process-wide workers
// SpiceDB's dependencies start at init (federation imports directory, which
// imports the engine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("cloud.google.com/go/spanner.(*endpointLatencyRegistry).runCleanup"),
	)
}

const testIssuer = "http://127.0.0.1:8080"

// clock is a settable time source safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestSigner(t testing.TB, c *clock, mutate ...func(*SignerConfig)) *Signer {
	t.Helper()
	cfg := SignerConfig{Issuer: testIssuer, Now: c.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := NewSigner(cfg)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func issue(t testing.TB, s *Signer, c AccessClaims) string {
	t.Helper()
	tok, _, err := s.Issue(c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func mustVerify(t testing.TB, s *Signer, token string) Verified {
	t.Helper()
	v, err := s.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return v
}

// refused asserts that Verify rejects token as unauthenticated with a message
// containing reason and quoting no part of the token.
func refused(t testing.TB, s *Signer, token, reason string) {
	t.Helper()
	v, err := s.Verify(token)
	if err == nil {
		t.Fatalf("Verify accepted a bad token (want %q): %+v", reason, v)
	}
	if !errors.Is(err, trellis.ErrUnauthenticated) {
		t.Fatalf("Verify error %v does not wrap ErrUnauthenticated", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("Verify error %q, want it to say %q", err, reason)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Fatalf("Verify error %q quotes the token", err)
		}
	}
	if v.Subject != "" || v.ID != "" || v.Audience != nil || !v.ExpiresAt.IsZero() {
		t.Fatalf("Verify returned claims with an error: %+v", v)
	}
}

func segments(t testing.TB, token string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	decode := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment not base64url: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("segment not JSON: %v", err)
		}
		return m
	}
	return decode(parts[0]), decode(parts[1])
}

// forge signs claims with key under an arbitrary header, as an attacker (or a
// buggy issuer) holding key could.
func forge(t testing.TB, alg jose.SignatureAlgorithm, key any, kid, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		t.Fatalf("jose.NewSigner: %v", err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return tok
}

// validClaims are claims Verify would accept at c.Now().
func validClaims(c *clock) tokenClaims {
	now := c.Now()
	return tokenClaims{
		Issuer:    testIssuer,
		Subject:   "user:ada",
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(10 * time.Minute)),
		ID:        "forged-jti",
	}
}

func currentKey(s *Signer) *signingKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

type jwksDoc struct {
	Keys []map[string]any `json:"keys"`
}

func jwksKids(t testing.TB, s *Signer) []string {
	t.Helper()
	var doc jwksDoc
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	kids := make([]string, 0, len(doc.Keys))
	for _, k := range doc.Keys {
		kids = append(kids, k["kid"].(string))
	}
	return kids
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	c := newClock()
	c.Advance(400 * time.Millisecond) // sub-second instants are truncated to whole seconds
	s := newTestSigner(t, c)

	tok, exp, err := s.Issue(AccessClaims{
		Subject:      "user:emil",
		Organization: "globex-eu",
		Actor:        "user:pat",
		Audience:     []string{"https://app.example", "https://api.example"},
		TTL:          20 * time.Minute,
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	iat := c.Now().Truncate(time.Second)
	if want := iat.Add(20 * time.Minute); !exp.Equal(want) {
		t.Fatalf("expiresAt = %v, want %v", exp, want)
	}

	header, payload := segments(t, tok)
	wantHeader := map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": currentKey(s).kid}
	if !maps.Equal(header, wantHeader) {
		t.Fatalf("header = %v, want %v", header, wantHeader)
	}
	for _, claim := range []string{"iss", "sub", "org", "act", "aud", "iat", "nbf", "exp", "jti"} {
		if _, ok := payload[claim]; !ok {
			t.Errorf("payload lacks %q: %v", claim, payload)
		}
	}
	if payload["iss"] != testIssuer {
		t.Errorf("iss = %v", payload["iss"])
	}
	if payload["nbf"] != payload["iat"] {
		t.Errorf("nbf %v != iat %v", payload["nbf"], payload["iat"])
	}

	v := mustVerify(t, s, tok)
	if v.Subject != "user:emil" || v.Organization != "globex-eu" || v.Actor != "user:pat" {
		t.Errorf("Verified = %+v", v)
	}
	if !slices.Equal(v.Audience, []string{"https://app.example", "https://api.example"}) {
		t.Errorf("Audience = %v", v.Audience)
	}
	if !v.IssuedAt.Equal(iat) || !v.ExpiresAt.Equal(exp) {
		t.Errorf("IssuedAt %v ExpiresAt %v, want %v and %v", v.IssuedAt, v.ExpiresAt, iat, exp)
	}
	if v.ID != payload["jti"] {
		t.Errorf("ID %q != jti %v", v.ID, payload["jti"])
	}
	if raw, err := base64.RawURLEncoding.DecodeString(v.ID); err != nil || len(raw) != 16 {
		t.Errorf("jti %q is not 128 bits of base64url (%v)", v.ID, err)
	}

	// jti is random per token; the default TTL is 15 minutes; aud is optional.
	tok2, exp2, err := s.Issue(AccessClaims{Subject: "user:emil"})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	v2 := mustVerify(t, s, tok2)
	if v2.ID == v.ID {
		t.Errorf("two tokens share jti %q", v.ID)
	}
	if want := iat.Add(DefaultTTL); !exp2.Equal(want) {
		t.Errorf("default expiresAt = %v, want %v", exp2, want)
	}
	if v2.Audience != nil || v2.Organization != "" || v2.Actor != "" {
		t.Errorf("minimal token verified as %+v", v2)
	}
}

func TestActClaimShape(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)

	_, payload := segments(t, issue(t, s, AccessClaims{Subject: "user:iris", Organization: "initech", Actor: "user:pat"}))
	act, ok := payload["act"].(map[string]any)
	if !ok {
		t.Fatalf("act = %#v, want a JSON object (RFC 8693 §4.1)", payload["act"])
	}
	if !maps.Equal(act, map[string]any{"sub": "user:pat"}) {
		t.Fatalf("act = %v, want {\"sub\":\"user:pat\"}", act)
	}
	if payload["sub"] != "user:iris" || payload["org"] != "initech" {
		t.Fatalf("sub/org = %v/%v", payload["sub"], payload["org"])
	}

	_, payload = segments(t, issue(t, s, AccessClaims{Subject: "user:iris"}))
	for _, absent := range []string{"act", "org", "aud"} {
		if _, ok := payload[absent]; ok {
			t.Errorf("%q present although empty: %v", absent, payload)
		}
	}

	// A single audience is the RFC 7519 string form; Verify still reports a list.
	tok := issue(t, s, AccessClaims{Subject: "user:iris", Audience: []string{"https://app.example"}})
	if _, payload = segments(t, tok); payload["aud"] != "https://app.example" {
		t.Errorf("aud = %#v", payload["aud"])
	}
	if v := mustVerify(t, s, tok); !slices.Equal(v.Audience, []string{"https://app.example"}) {
		t.Errorf("Audience = %v", v.Audience)
	}
}

func TestExpiredTokenRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	tok := issue(t, s, AccessClaims{Subject: "user:ada", TTL: 5 * time.Minute})

	c.Advance(5*time.Minute + Leeway) // exactly at exp + leeway: still accepted
	mustVerify(t, s, tok)

	c.Advance(time.Second)
	refused(t, s, tok, "token expired")
}

func TestNotBeforeInFutureRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	tok := issue(t, s, AccessClaims{Subject: "user:ada"})

	c.Advance(-Leeway) // nbf = now + leeway: tolerated skew
	mustVerify(t, s, tok)

	c.Advance(-time.Second)
	refused(t, s, tok, "token not yet valid")

	// A validly signed token whose iat is in the future (but nbf is not) is refused too.
	c = newClock()
	s = newTestSigner(t, c)
	claims := validClaims(c)
	claims.IssuedAt = jwt.NewNumericDate(c.Now().Add(time.Hour))
	k := currentKey(s)
	refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, claims), "issued in the future")
}

func TestWrongIssuerRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	k := currentKey(s)

	good := validClaims(c)
	mustVerify(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, good)) // the forge itself is sound

	for _, iss := range []string{"https://evil.example", testIssuer + "/", "", "HTTP://127.0.0.1:8080"} {
		claims := validClaims(c)
		claims.Issuer = iss
		refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, claims), "wrong issuer")
	}

	// A Signer configured for another issuer refuses this one's tokens even with the same keys.
	other := &Signer{cfg: s.cfg, current: k}
	other.cfg.Issuer = "https://other.example"
	refused(t, other, issue(t, s, AccessClaims{Subject: "user:ada"}), "wrong issuer")
}

func TestTokenFromAnotherSignerRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	stranger := newTestSigner(t, c) // same issuer, its own key

	refused(t, s, issue(t, stranger, AccessClaims{Subject: "user:ada"}), "unknown signing key")

	// Claiming s's kid does not help: the signature is checked against s's key.
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, s, forge(t, jose.ES256, attacker, currentKey(s).kid, AccessTokenType, validClaims(c)), "invalid signature")

	// No kid at all.
	refused(t, s, forge(t, jose.ES256, currentKey(s).private, "", AccessTokenType, validClaims(c)), "missing key id")
}

func TestTamperedTokenRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	tok := issue(t, s, AccessClaims{Subject: "user:ada", Organization: "globex"})
	parts := strings.Split(tok, ".")

	// Payload rewritten to another subject and org, header and signature kept.
	_, payload := segments(t, tok)
	payload["sub"] = "user:pat"
	payload["org"] = "acme-saas"
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, s, parts[0]+"."+base64.RawURLEncoding.EncodeToString(b)+"."+parts[2], "invalid signature")

	// One signature byte flipped.
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[10] ^= 0x01
	refused(t, s, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig), "invalid signature")

	// Signature dropped; structure broken; typ changed.
	refused(t, s, parts[0]+"."+parts[1]+".", "invalid signature")
	refused(t, s, parts[0]+"."+parts[1], "malformed token")
	refused(t, s, "", "empty token")
	refused(t, s, strings.Repeat("a", maxTokenBytes+1), "token too large")
	k := currentKey(s)
	refused(t, s, forge(t, jose.ES256, k.private, k.kid, "JWT", validClaims(c)), "not an access token")

	// Validly signed tokens lacking a required claim are refused.
	for _, drop := range []func(*tokenClaims){
		func(c *tokenClaims) { c.Expiry = nil },
		func(c *tokenClaims) { c.IssuedAt = nil },
		func(c *tokenClaims) { c.Subject = "" },
		func(c *tokenClaims) { c.ID = "" },
	} {
		claims := validClaims(c)
		drop(&claims)
		refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, claims), "missing required claim")
	}
	withoutExp := map[string]any{"iss": testIssuer, "sub": "user:ada", "iat": c.Now().Unix(), "jti": "j"}
	refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, withoutExp), "missing required claim")
	emptyAct := map[string]any{"iss": testIssuer, "sub": "user:ada", "iat": c.Now().Unix(), "exp": c.Now().Unix() + 60,
		"jti": "j", "act": map[string]any{}}
	refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, emptyAct), "malformed act claim")
}

func TestAlgNoneAndHMACWithPublicKeyRefused(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	k := currentKey(s)
	claimsJSON, err := json.Marshal(validClaims(c))
	if err != nil {
		t.Fatal(err)
	}
	payload := base64.RawURLEncoding.EncodeToString(claimsJSON)

	// alg "none" (in several spellings), with and without a signature segment.
	genuine := strings.Split(issue(t, s, AccessClaims{Subject: "user:ada"}), ".")[2]
	for _, alg := range []string{"none", "None", "NONE"} {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": AccessTokenType, "kid": k.kid})
		header := base64.RawURLEncoding.EncodeToString(h)
		refused(t, s, header+"."+payload+".", "unsupported signing algorithm")
		refused(t, s, header+"."+payload+"."+genuine, "unsupported signing algorithm")
	}

	// HS256 keyed with the public key in every form a confused verifier might use.
	der, err := x509.MarshalPKIXPublicKey(k.public)
	if err != nil {
		t.Fatal(err)
	}
	point, err := k.public.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: k.public, KeyID: k.kid, Algorithm: "ES256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"pem":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"der":   der,
		"point": point,
		"jwk":   jwk,
		"jwks":  s.JWKS(),
	}
	for name, secret := range secrets {
		t.Run(name, func(t *testing.T) {
			refused(t, s, forge(t, jose.HS256, secret, k.kid, AccessTokenType, validClaims(c)), "unsupported signing algorithm")
		})
	}

	// Another asymmetric algorithm is refused as well.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, s, forge(t, jose.ES384, p384, k.kid, AccessTokenType, validClaims(c)), "unsupported signing algorithm")
}

func TestRotation(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c) // MaxTTL 1h
	old := issue(t, s, AccessClaims{Subject: "user:ada", TTL: time.Hour})
	oldKid := currentKey(s).kid

	if err := s.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	fresh := issue(t, s, AccessClaims{Subject: "user:ada", TTL: time.Hour})
	newKid := currentKey(s).kid
	if newKid == oldKid {
		t.Fatal("Rotate kept the kid")
	}
	if h, _ := segments(t, fresh); h["kid"] != newKid {
		t.Fatalf("token after rotation signed with %v, want %s", h["kid"], newKid)
	}
	if got := jwksKids(t, s); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Fatalf("JWKS kids = %v, want [new, old] = %v", got, []string{newKid, oldKid})
	}
	mustVerify(t, s, old)
	mustVerify(t, s, fresh)

	c.Advance(time.Hour - time.Second) // one second before MaxTTL after rotation: old key still published
	if got := jwksKids(t, s); len(got) != 2 {
		t.Fatalf("JWKS kids = %v, want both", got)
	}
	mustVerify(t, s, old)

	c.Advance(time.Second) // MaxTTL after rotation: old key gone. old's exp+leeway is still ahead,
	// so the refusal below is due to the key alone.
	if got := jwksKids(t, s); !slices.Equal(got, []string{newKid}) {
		t.Fatalf("JWKS kids = %v, want only %s", got, newKid)
	}
	refused(t, s, old, "unknown signing key")
	mustVerify(t, s, fresh)

	// The next rotation physically drops the expired key.
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	n := len(s.retired)
	s.mu.RUnlock()
	if n != 1 {
		t.Fatalf("%d retired keys kept, want 1 (the one just retired)", n)
	}
}

func TestIssueRotatesAfterRotateEvery(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c, func(cfg *SignerConfig) { cfg.RotateEvery = 2 * time.Hour })
	first := currentKey(s).kid
	tok := issue(t, s, AccessClaims{Subject: "user:ada"})

	c.Advance(2*time.Hour - time.Second)
	issue(t, s, AccessClaims{Subject: "user:ada"})
	if currentKey(s).kid != first {
		t.Fatal("rotated before RotateEvery")
	}

	c.Advance(time.Second)
	h, _ := segments(t, issue(t, s, AccessClaims{Subject: "user:ada"}))
	second := currentKey(s).kid
	if second == first || h["kid"] != second {
		t.Fatalf("Issue at RotateEvery signed with %v (first %s, current %s)", h["kid"], first, second)
	}
	if got := jwksKids(t, s); !slices.Equal(got, []string{second, first}) {
		t.Fatalf("JWKS kids = %v", got)
	}
	// tok (issued 2h ago, 15m TTL) is expired; its key is still published, so the reason is expiry.
	refused(t, s, tok, "token expired")
}

func TestIssueValidation(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c, func(cfg *SignerConfig) { cfg.MaxTTL = 30 * time.Minute })

	for _, tc := range []struct {
		claims AccessClaims
		field  string
	}{
		{AccessClaims{Subject: "user:ada", TTL: 30*time.Minute + time.Second}, "ttl"},
		{AccessClaims{Subject: "user:ada", TTL: -time.Second}, "ttl"},
		{AccessClaims{TTL: time.Minute}, "subject"},
		{AccessClaims{Subject: "user:ada", Audience: []string{"a", ""}}, "audience[1]"},
	} {
		tok, _, err := s.Issue(tc.claims)
		var ve *trellis.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Issue(%+v) = %q, %v; want ValidationError on %q", tc.claims, tok, err, tc.field)
		}
	}

	_, exp, err := s.Issue(AccessClaims{Subject: "user:ada", TTL: 30 * time.Minute})
	if err != nil || !exp.Equal(c.Now().Add(30*time.Minute)) {
		t.Fatalf("TTL == MaxTTL: %v, %v", exp, err)
	}

	// The 15m default is capped by a smaller MaxTTL.
	small := newTestSigner(t, c, func(cfg *SignerConfig) { cfg.MaxTTL = 5 * time.Minute })
	if _, exp, err := small.Issue(AccessClaims{Subject: "user:ada"}); err != nil || !exp.Equal(c.Now().Add(5*time.Minute)) {
		t.Fatalf("default TTL with MaxTTL 5m: %v, %v", exp, err)
	}
}

func TestSignerConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   SignerConfig
		field string
	}{
		{SignerConfig{}, "issuer"},
		{SignerConfig{Issuer: "127.0.0.1:8080"}, "issuer"},
		{SignerConfig{Issuer: "/relative"}, "issuer"},
		{SignerConfig{Issuer: "ftp://trellis.example"}, "issuer"},
		{SignerConfig{Issuer: "https://"}, "issuer"},
		{SignerConfig{Issuer: "https://trellis.example?x=1"}, "issuer"},
		{SignerConfig{Issuer: "https://trellis.example#f"}, "issuer"},
		{SignerConfig{Issuer: testIssuer, RotateEvery: -time.Hour}, "rotate_every"},
		{SignerConfig{Issuer: testIssuer, MaxTTL: -time.Hour}, "max_ttl"},
	} {
		err := tc.cfg.Validate()
		var ve *trellis.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want ValidationError on %q", tc.cfg, err, tc.field)
		}
		if _, err := NewSigner(tc.cfg); !errors.As(err, &ve) {
			t.Errorf("NewSigner(%+v) = %v, want ValidationError", tc.cfg, err)
		}
	}

	cfg := SignerConfig{Issuer: "https://id.example.com/tenant"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.RotateEvery != 24*time.Hour || cfg.MaxTTL != time.Hour || cfg.Now == nil {
		t.Fatalf("defaults not filled: %+v", cfg)
	}
}

func TestJWKSPublicOnly(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	raw := s.JWKS()
	var doc jwksDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, raw)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys, want 2", len(doc.Keys))
	}
	wantFields := []string{"alg", "crv", "kid", "kty", "use", "x", "y"}
	for _, key := range doc.Keys {
		if got := slices.Sorted(maps.Keys(key)); !slices.Equal(got, wantFields) {
			t.Errorf("JWK fields = %v, want %v", got, wantFields)
		}
		if _, ok := key["d"]; ok {
			t.Errorf("JWK carries private material: %v", key)
		}
		if key["kty"] != "EC" || key["crv"] != "P-256" || key["alg"] != "ES256" || key["use"] != "sig" {
			t.Errorf("JWK = %v", key)
		}
		// kid is the RFC 7638 thumbprint, computed here from the published members.
		canonical := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, key["x"], key["y"])
		sum := sha256.Sum256([]byte(canonical))
		if want := base64.RawURLEncoding.EncodeToString(sum[:]); key["kid"] != want {
			t.Errorf("kid = %v, want RFC 7638 thumbprint %s", key["kid"], want)
		}
	}
	if strings.Contains(string(raw), `"d"`) {
		t.Errorf("JWKS mentions \"d\": %s", raw)
	}
	// Every key in the set is public per go-jose as well.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Errorf("key %s: public %v valid %v", k.KeyID, k.IsPublic(), k.Valid())
		}
	}
}

// TestClientVerifiesWithPublishedJWKS verifies tokens as a client would: with
// go-jose and nothing but the JWKS document.
func TestClientVerifiesWithPublishedJWKS(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)
	before := issue(t, s, AccessClaims{Subject: "user:emil", Organization: "globex-eu", Actor: "user:pat", Audience: []string{"https://app.example"}})
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	after := issue(t, s, AccessClaims{Subject: "user:uma"})
	published := s.JWKS()

	type clientClaims struct {
		jwt.Claims
		Org string `json:"org"`
		Act *struct {
			Sub string `json:"sub"`
		} `json:"act"`
	}
	verifyAsClient := func(token string) clientClaims {
		t.Helper()
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(published, &set); err != nil {
			t.Fatalf("client: JWKS: %v", err)
		}
		parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("client: parse: %v", err)
		}
		keys := set.Key(parsed.Headers[0].KeyID)
		if len(keys) != 1 {
			t.Fatalf("client: %d keys for kid %q", len(keys), parsed.Headers[0].KeyID)
		}
		var cl clientClaims
		if err := parsed.Claims(keys[0].Key, &cl); err != nil {
			t.Fatalf("client: signature: %v", err)
		}
		if err := cl.ValidateWithLeeway(jwt.Expected{Issuer: testIssuer, Time: c.Now()}, 0); err != nil {
			t.Fatalf("client: claims: %v", err)
		}
		return cl
	}

	cl := verifyAsClient(before)
	if cl.Subject != "user:emil" || cl.Org != "globex-eu" || cl.Act == nil || cl.Act.Sub != "user:pat" ||
		!cl.Audience.Contains("https://app.example") {
		t.Errorf("client read %+v", cl)
	}
	if cl := verifyAsClient(after); cl.Subject != "user:uma" || cl.Act != nil {
		t.Errorf("client read %+v", cl)
	}

	// And the client rejects a token from a key outside the set.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(published, &set); err != nil {
		t.Fatal(err)
	}
	stranger := issue(t, newTestSigner(t, c), AccessClaims{Subject: "user:uma"})
	parsed, err := jwt.ParseSigned(stranger, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Key(parsed.Headers[0].KeyID)) != 0 {
		t.Fatal("stranger's kid found in the JWKS")
	}
	for _, k := range set.Keys {
		if err := parsed.Claims(k.Key, &jwt.Claims{}); err == nil {
			t.Fatalf("stranger's token verified with published key %s", k.KeyID)
		}
	}
}

func TestConcurrentIssueVerifyRotate(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c, func(cfg *SignerConfig) { cfg.RotateEvery = 10 * time.Second })

	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				sub := fmt.Sprintf("user:%d-%d", w, i)
				tok, _, err := s.Issue(AccessClaims{Subject: sub, Organization: "globex"})
				if err != nil {
					errs <- err
					return
				}
				v, err := s.Verify(tok)
				if err != nil {
					errs <- fmt.Errorf("verify own token: %w", err)
					return
				}
				if v.Subject != sub {
					errs <- fmt.Errorf("subject %q, want %q", v.Subject, sub)
					return
				}
			}
		})
	}
	wg.Go(func() { // explicit rotations
		for range rounds / 4 {
			if err := s.Rotate(); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() { // time passes (rotation by age), well within the 15m token TTL
		for range rounds {
			c.Advance(time.Second)
		}
	})
	wg.Go(func() { // JWKS readers
		for range rounds {
			var doc jwksDoc
			if err := json.Unmarshal(s.JWKS(), &doc); err != nil || len(doc.Keys) == 0 {
				errs <- fmt.Errorf("JWKS: %v (%d keys)", err, len(doc.Keys))
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(jwksKids(t, s)); n < 2 {
		t.Errorf("after rotations the JWKS has %d keys", n)
	}
}

func FuzzVerify(f *testing.F) {
	c := newClock()
	s := newTestSigner(f, c)
	valid := issue(f, s, AccessClaims{Subject: "user:ada", Organization: "globex", Actor: "user:pat", Audience: []string{"x"}})
	want, err := s.Verify(valid)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		valid,
		"",
		".",
		"..",
		"a.b.c",
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		"." + parts[1] + "." + parts[2],
		`{"payload":"","signatures":[]}`,
		"eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJFUzI1NiJ9.bnVsbA." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + ".x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		v, err := s.Verify(token)
		if err == nil {
			// Only the token this Signer issued can verify. Its string may differ
			// (unused trailing bits of the base64url signature; ECDSA's (r, n-s)),
			// its claims may not.
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("Verify accepted a token it did not issue: %+v", v)
			}
			return
		}
		if !errors.Is(err, trellis.ErrUnauthenticated) {
			t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
		}
		// Reasons are fixed texts without '.', so a token-shaped input can never be quoted.
		if strings.Contains(token, ".") && len(token) > 3 && strings.Contains(err.Error(), token) {
			t.Fatalf("error %q quotes the input", err)
		}
	})
}
