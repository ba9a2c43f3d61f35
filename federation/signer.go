package federation

import (
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

const (
	// DefaultRotateEvery is the default age after which Issue rotates the signing key.
	DefaultRotateEvery = 24 * time.Hour
	// DefaultMaxTTL is the default longest token lifetime Issue grants.
	DefaultMaxTTL = time.Hour
	// DefaultTTL is the lifetime of a token issued with AccessClaims.TTL == 0
	// (capped at MaxTTL).
	DefaultTTL = 15 * time.Minute
	// Leeway is the clock skew Verify tolerates on exp, nbf and iat.
	Leeway = 30 * time.Second

	// AccessTokenType is the JOSE "typ" header of a Trellis access token (RFC 9068).
	AccessTokenType = "at+jwt"

	// maxTokenBytes bounds the input Verify will parse; Trellis tokens are well under 1 KiB.
	maxTokenBytes = 8 << 10
)

// SignerConfig configures a Signer. Validate fills the defaults.
type SignerConfig struct {
	Issuer      string           // iss claim, e.g. "http://127.0.0.1:8080"
	RotateEvery time.Duration    // default 24h: a new signing key after this age
	MaxTTL      time.Duration    // default 1h: the longest token Issue grants; retired keys stay published this long after rotation
	Now         func() time.Time // default time.Now (tests inject a clock)

	// Keys, when set, keeps the signing keys in the store, shared by every
	// node and kept across restarts (keystore.go); nil keeps them in this
	// process only. KeyEncryptionKey (32 bytes, AES-256-GCM) seals each
	// private key before it is stored; it is required with Keys.
	Keys             store.Store
	KeyEncryptionKey []byte
}

// Validate fills defaults and checks the configuration. Issuer is required and
// must be an absolute http(s) URL without query or fragment (OpenID Connect
// Discovery §3 / RFC 8414 §2).
func (c *SignerConfig) Validate() error {
	if c.Issuer == "" {
		return trellis.Invalid("issuer", "required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return trellis.Invalid("issuer", "must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return trellis.Invalid("issuer", "must not carry user info, a query or a fragment")
	}
	switch {
	case c.RotateEvery < 0:
		return trellis.Invalid("rotate_every", "must not be negative")
	case c.RotateEvery == 0:
		c.RotateEvery = DefaultRotateEvery
	}
	switch {
	case c.MaxTTL < 0:
		return trellis.Invalid("max_ttl", "must not be negative")
	case c.MaxTTL == 0:
		c.MaxTTL = DefaultMaxTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Keys != nil && len(c.KeyEncryptionKey) != 32 {
		return trellis.Invalid("key_encryption_key", "must be 32 bytes when keys are stored, got %d", len(c.KeyEncryptionKey))
	}
	return nil
}

// signingKey is one ES256 key pair. Only the public half ever leaves the Signer.
type signingKey struct {
	kid       string
	private   *ecdsa.PrivateKey
	public    *ecdsa.PublicKey
	signer    jose.Signer // safe for concurrent use: Sign does not mutate it
	created   time.Time
	retiredAt time.Time // zero while current
}

// Signer issues and verifies Trellis access tokens (ES256 JWTs, RFC 9068) and
// publishes its public keys as a JWKS. It is safe for concurrent use. Keys live
// in memory only: a restart invalidates every outstanding token.
type Signer struct {
	cfg SignerConfig
	kek cipher.AEAD // seals stored keys; nil without cfg.Keys

	reloadMu   sync.Mutex // one reload from the store at a time
	lastReload time.Time

	mu      sync.RWMutex
	current *signingKey
	retired []*signingKey // most recently retired first
}

// NewSigner validates cfg and generates the first signing key.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Keys != nil {
		return newStoredSigner(cfg)
	}
	k, err := newSigningKey(cfg.Now())
	if err != nil {
		return nil, err
	}
	return &Signer{cfg: cfg, current: k}, nil
}

func newSigningKey(now time.Time) (*signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("federation: generate signing key: %w", err)
	}
	return signingKeyOf(priv, now)
}

// signingKeyOf wraps priv, created at now, with its kid (RFC 7638 thumbprint) and signer.
func signingKeyOf(priv *ecdsa.PrivateKey, now time.Time) (*signingKey, error) {
	pub := &priv.PublicKey
	thumb, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("federation: key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	sig, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(AccessTokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("federation: signer: %w", err)
	}
	return &signingKey{kid: kid, private: priv, public: pub, signer: sig, created: now}, nil
}

// published reports whether k may still be used to verify tokens and is listed in the JWKS.
func (s *Signer) published(k *signingKey, now time.Time) bool {
	return k.retiredAt.IsZero() || now.Before(k.retiredAt.Add(s.cfg.MaxTTL))
}

// Rotate makes a new current key. The previous key stays published (for Verify
// and JWKS) until MaxTTL after now, then it is dropped.
func (s *Signer) Rotate() error {
	now := s.cfg.Now()
	if s.cfg.Keys != nil {
		return s.rotateStored(now, true)
	}
	k, err := newSigningKey(now) // outside the lock: key generation is the slow part
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installLocked(k, now)
	return nil
}

// installLocked retires the current key in favour of k and drops retired keys
// no longer published. s.mu must be held for writing.
func (s *Signer) installLocked(k *signingKey, now time.Time) {
	old := s.current
	old.retiredAt = now
	kept := make([]*signingKey, 0, len(s.retired)+1)
	kept = append(kept, old)
	for _, r := range s.retired {
		if s.published(r, now) {
			kept = append(kept, r)
		}
	}
	s.current = k
	s.retired = kept
}

// currentKey returns the key to sign with at now, rotating first when the
// current key has reached RotateEvery.
func (s *Signer) currentKey(now time.Time) (*signingKey, error) {
	s.mu.RLock()
	k := s.current
	s.mu.RUnlock()
	if now.Sub(k.created) < s.cfg.RotateEvery {
		return k, nil
	}
	if s.cfg.Keys != nil {
		if err := s.rotateStored(now, false); err != nil {
			return nil, err
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.current, nil
	}
	fresh, err := newSigningKey(now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.current.created) >= s.cfg.RotateEvery { // nobody rotated meanwhile
		s.installLocked(fresh, now)
	}
	return s.current, nil
}

// AccessClaims is what Issue puts in a token.
type AccessClaims struct {
	Subject       string        // user id → "sub"
	Organization  string        // → "org" (omitted when "")
	Actor         string        // impersonator user id → "act": {"sub": Actor} (RFC 8693), omitted when ""
	Impersonation string        // the impersonation an act token is bound to → "imp" (omitted when ""); requires Actor
	Audience      []string      // → "aud" (optional)
	TTL           time.Duration // 0 → 15m default (capped at MaxTTL); > MaxTTL → *trellis.ValidationError field "ttl"
}

// actorClaim is the RFC 8693 §4.1 "act" claim.
type actorClaim struct {
	Subject string `json:"sub"`
}

// tokenClaims is the JWT payload of a Trellis access token.
type tokenClaims struct {
	Issuer       string           `json:"iss"`
	Subject      string           `json:"sub"`
	Organization string           `json:"org,omitempty"`
	Actor        *actorClaim      `json:"act,omitempty"`
	Imp          string           `json:"imp,omitempty"`
	Audience     jwt.Audience     `json:"aud,omitempty"`
	IssuedAt     *jwt.NumericDate `json:"iat"`
	NotBefore    *jwt.NumericDate `json:"nbf"`
	Expiry       *jwt.NumericDate `json:"exp"`
	ID           string           `json:"jti"`
}

// Issue signs an access token for c. The header carries kid, alg ES256 and typ
// "at+jwt" (RFC 9068); the claims iss, sub, org, act, imp, aud, iat, nbf, exp and a
// random 128-bit jti. expiresAt equals the exp claim (whole seconds).
func (s *Signer) Issue(c AccessClaims) (token string, expiresAt time.Time, err error) {
	if c.Subject == "" {
		return "", time.Time{}, trellis.Invalid("subject", "required")
	}
	if c.Impersonation != "" && c.Actor == "" {
		return "", time.Time{}, trellis.Invalid("impersonation", "requires an actor")
	}
	for i, a := range c.Audience {
		if a == "" {
			return "", time.Time{}, trellis.Invalid(fmt.Sprintf("audience[%d]", i), "must not be empty")
		}
	}
	ttl := c.TTL
	switch {
	case ttl < 0:
		return "", time.Time{}, trellis.Invalid("ttl", "must be positive")
	case ttl == 0:
		ttl = min(DefaultTTL, s.cfg.MaxTTL)
	case ttl > s.cfg.MaxTTL:
		return "", time.Time{}, trellis.Invalid("ttl", "must be at most %s", s.cfg.MaxTTL)
	}

	now := s.cfg.Now()
	k, err := s.currentKey(now)
	if err != nil {
		return "", time.Time{}, err
	}

	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	issuedAt := time.Unix(now.Unix(), 0)
	expiresAt = issuedAt.Add(ttl)
	claims := tokenClaims{
		Issuer:       s.cfg.Issuer,
		Subject:      c.Subject,
		Organization: c.Organization,
		Imp:          c.Impersonation,
		Audience:     jwt.Audience(c.Audience),
		IssuedAt:     jwt.NewNumericDate(issuedAt),
		NotBefore:    jwt.NewNumericDate(issuedAt),
		Expiry:       jwt.NewNumericDate(expiresAt),
		ID:           base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	if c.Actor != "" {
		claims.Actor = &actorClaim{Subject: c.Actor}
	}
	token, err = jwt.Signed(k.signer).Claims(claims).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("federation: sign token: %w", err)
	}
	return token, expiresAt, nil
}

// Verified is what Verify learned from a valid token.
type Verified struct {
	Subject, Organization, Actor, ID string
	Impersonation                    string // the "imp" claim: the impersonation an act token was minted for
	Audience                         []string
	IssuedAt, ExpiresAt              time.Time
}

// tokenHeader is the part of the JOSE header Verify reads before handing the
// token to go-jose, only to say precisely why a token with another algorithm is
// refused; go-jose's own parse (ES256 only) is authoritative.
type tokenHeader struct {
	Alg string `json:"alg"`
}

// unauthenticated wraps trellis.ErrUnauthenticated with a fixed reason. Reasons
// never quote the token or any part of it.
func unauthenticated(reason string) error {
	return fmt.Errorf("%w: %s", trellis.ErrUnauthenticated, reason)
}

// Verify checks token: compact JWS, alg ES256 only, typ at+jwt, kid naming a
// key this Signer currently publishes, a valid signature, iss equal to the
// configured issuer, and exp/nbf/iat within Leeway of Now. Every failure wraps
// trellis.ErrUnauthenticated.
func (s *Signer) Verify(token string) (Verified, error) {
	if token == "" {
		return Verified{}, unauthenticated("empty token")
	}
	if len(token) > maxTokenBytes {
		return Verified{}, unauthenticated("token too large")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Verified{}, unauthenticated("malformed token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Verified{}, unauthenticated("malformed token header")
	}
	var h tokenHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return Verified{}, unauthenticated("malformed token header")
	}
	if h.Alg != string(jose.ES256) {
		return Verified{}, unauthenticated("unsupported signing algorithm")
	}

	// go-jose parses again, with ES256 as the only acceptable algorithm.
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return Verified{}, unauthenticated("malformed token")
	}
	hdr := tok.Headers[0]
	if hdr.Algorithm != string(jose.ES256) {
		return Verified{}, unauthenticated("unsupported signing algorithm")
	}
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, AccessTokenType) &&
		!strings.EqualFold(typ, "application/"+AccessTokenType) {
		return Verified{}, unauthenticated("not an access token (typ)")
	}
	if hdr.KeyID == "" {
		return Verified{}, unauthenticated("missing key id")
	}

	now := s.cfg.Now()
	pub := s.publicKey(hdr.KeyID, now)
	if pub == nil && s.cfg.Keys != nil && s.reload(now) {
		pub = s.publicKey(hdr.KeyID, now) // another node's newer key
	}
	if pub == nil {
		return Verified{}, unauthenticated("unknown signing key")
	}
	var c tokenClaims
	if err := tok.Claims(pub, &c); err != nil {
		// The payload is decoded only after its signature verified, so this is
		// almost always a bad signature.
		return Verified{}, unauthenticated("invalid signature")
	}

	if c.Issuer != s.cfg.Issuer {
		return Verified{}, unauthenticated("wrong issuer")
	}
	if c.Subject == "" || c.Expiry == nil || c.IssuedAt == nil || c.ID == "" {
		return Verified{}, unauthenticated("missing required claim")
	}
	if c.Actor != nil && c.Actor.Subject == "" {
		return Verified{}, unauthenticated("malformed act claim")
	}
	if c.Imp != "" && c.Actor == nil {
		return Verified{}, unauthenticated("imp claim without act")
	}
	std := jwt.Claims{Expiry: c.Expiry, NotBefore: c.NotBefore, IssuedAt: c.IssuedAt}
	switch err := std.ValidateWithLeeway(jwt.Expected{Time: now}, Leeway); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return Verified{}, unauthenticated("token expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return Verified{}, unauthenticated("token not yet valid")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Verified{}, unauthenticated("token issued in the future")
	default:
		return Verified{}, unauthenticated("invalid token times")
	}

	v := Verified{
		Subject:       c.Subject,
		Organization:  c.Organization,
		Impersonation: c.Imp,
		ID:            c.ID,
		IssuedAt:      c.IssuedAt.Time(),
		ExpiresAt:     c.Expiry.Time(),
	}
	if c.Actor != nil {
		v.Actor = c.Actor.Subject
	}
	if len(c.Audience) > 0 {
		v.Audience = append([]string(nil), c.Audience...)
	}
	return v, nil
}

// publicKey returns the published public key named kid at now, or nil.
func (s *Signer) publicKey(kid string, now time.Time) *ecdsa.PublicKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.current.kid == kid {
		return s.current.public
	}
	for _, k := range s.retired {
		if k.kid == kid && s.published(k, now) {
			return k.public
		}
	}
	return nil
}

// JWKS returns the JSON Web Key Set {"keys":[...]} of the published public
// keys (use, alg, kid, kty, crv, x, y), current key first, for
// /.well-known/jwks.json.
func (s *Signer) JWKS() []byte {
	now := s.cfg.Now()
	s.mu.RLock()
	keys := make([]*signingKey, 0, 1+len(s.retired))
	keys = append(keys, s.current)
	for _, k := range s.retired {
		if s.published(k, now) {
			keys = append(keys, k)
		}
	}
	s.mu.RUnlock()

	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       k.public,
			KeyID:     k.kid,
			Algorithm: string(jose.ES256),
			Use:       "sig",
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		// Marshalling a P-256 public key cannot fail; a failure is a programming error.
		panic(fmt.Sprintf("federation: marshal JWKS: %v", err))
	}
	return b
}
