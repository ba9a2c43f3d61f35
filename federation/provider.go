package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// The provider's endpoints (relative to the issuer).
const (
	pathAuthorize  = "sso/authorize"
	pathToken      = "oauth2/token"
	pathIntrospect = "oauth2/introspect"
	pathUserinfo   = "oauth2/userinfo"
	pathRevoke     = "oauth2/revoke"
	pathEndSession = "oauth2/logout"
	pathKeys       = ".well-known/jwks.json"
)

// provider is Trellis as an OpenID provider to applications: zitadel/oidc's
// op serves the protocol (authorization code + PKCE, token, refresh,
// userinfo, introspection, revocation, discovery, logout); this file is its
// storage. Sign-in itself (which IdP, which user, which organization) is
// the login flow's (login.go), which completes an authorization request.
type provider struct {
	s       *Service
	op      *op.Provider
	handler http.Handler
	grants  *grants
}

func newProvider(s *Service) (*provider, error) {
	p := &provider{s: s, grants: newGrants()}
	var cryptoKey [32]byte
	copy(cryptoKey[:], sha256Sum("trellis/op/crypto", s.cfg.KEK))
	cfg := &op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}
	opts := []op.Option{
		op.WithCustomAuthEndpoint(op.NewEndpoint(pathAuthorize)),
		op.WithCustomTokenEndpoint(op.NewEndpoint(pathToken)),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint(pathIntrospect)),
		op.WithCustomUserinfoEndpoint(op.NewEndpoint(pathUserinfo)),
		op.WithCustomRevocationEndpoint(op.NewEndpoint(pathRevoke)),
		op.WithCustomEndSessionEndpoint(op.NewEndpoint(pathEndSession)),
		op.WithCustomKeysEndpoint(op.NewEndpoint(pathKeys)),
		op.WithLogger(s.cfg.Logger),
	}
	if len(s.cfg.Issuer) > 5 && s.cfg.Issuer[:5] == "http:" {
		opts = append(opts, op.WithAllowInsecure())
	}
	o, err := op.NewProvider(cfg, (*opStorage)(p), op.StaticIssuer(s.cfg.Issuer), opts...)
	if err != nil {
		return nil, err
	}
	p.op, p.handler = o, o
	return p, nil
}

func sha256Sum(label string, key []byte) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(key)
	return h.Sum(nil)
}

// ---- in-flight state

// authRequest is an application's authorization request, completed by a sign-in.
type authRequest struct {
	ID            string
	CreatedAt     time.Time
	ClientID      string
	RedirectURI   string
	State, Nonce  string
	Scopes        []string
	ResponseType  oidc.ResponseType
	ResponseMode  oidc.ResponseMode
	CodeChallenge *oidc.CodeChallenge
	LoginHint     string
	OrgHint       string // ?organization=
	MaxAge        *uint

	// set when the sign-in completes
	UserID, Org string
	AuthTime    time.Time
	AMR         []string
	ACR         string
	done        bool
	code        string
	// Choices are the organizations a signed-in user may pick (organization picker).
	Choices []string
	// pendingUser is who signed in while a pick is outstanding.
	pendingUser string
	method      string // oidc | saml | impersonation, of the sign-in
	// Actor and Impersonation: a sign-in through an impersonation (the
	// actor's user id acts as UserID; tokens carry "act").
	Actor, Impersonation string
	connection           store.Connection // it came through
	// browser is the hash of the login cookie of the browser that signed in:
	// only it may pick an organization or collect the code.
	browser [32]byte
}

func (a *authRequest) GetID() string                         { return a.ID }
func (a *authRequest) GetACR() string                        { return a.ACR }
func (a *authRequest) GetAMR() []string                      { return a.AMR }
func (a *authRequest) GetAudience() []string                 { return []string{a.ClientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.AuthTime }
func (a *authRequest) GetClientID() string                   { return a.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.CodeChallenge }
func (a *authRequest) GetNonce() string                      { return a.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return a.Scopes }
func (a *authRequest) GetState() string                      { return a.State }
func (a *authRequest) GetSubject() string                    { return a.UserID }
func (a *authRequest) Done() bool                            { return a.done }

// family is one grant: everything issued from one authorization code, through
// every refresh. Revoking it (code reuse, refresh-token reuse, revocation,
// deprovisioning) ends all of its tokens at once.
type family struct {
	ID, ClientID, Subject, Org string
	revoked                    bool
	// Kind is "" for a sign-in's grant, kindClientCredentials for a
	// service account's (ClientID is then its key id, Subject
	// service_account:<id>).
	Kind       string
	KeyExpires time.Time // a client-credentials key's expiry (zero: none)
	// Actor and Impersonation mark a grant signed in through an
	// impersonation: Actor (a user id) acts as Subject ("act").
	Actor, Impersonation string
}

// target is the family's subject as an audit target.
func (f *family) target() string {
	if f.Kind == kindClientCredentials {
		return f.Subject
	}
	return "user:" + f.Subject
}

type accessToken struct {
	ID, Family          string
	IssuedAt, ExpiresAt time.Time
	Scopes              []string
}

type refreshToken struct {
	Family              string
	Scopes, AMR         []string
	ACR                 string
	AuthTime, ExpiresAt time.Time
	used                bool
}

// refreshRequest is a refresh grant as the op sees it.
type refreshRequest struct {
	fam    family
	tok    refreshToken
	hash   string
	scopes []string
}

func (r *refreshRequest) GetAMR() []string            { return r.tok.AMR }
func (r *refreshRequest) GetAudience() []string       { return []string{r.fam.ClientID} }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.tok.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.fam.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.fam.Subject }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

// grants is the provider's in-flight state: authorization requests, codes,
// grant families and their tokens. It lives in this process (see ADR 0016).
type grants struct {
	mu        sync.Mutex
	requests  map[string]*authRequest
	codes     map[string]string // code → request id
	usedCodes map[string]string // redeemed code → family id
	families  map[string]*family
	access    map[string]*accessToken
	refresh   map[string]*refreshToken // SHA-256 hex of the token → token
	usedAt    map[string]time.Time     // redeemed code → when (kept for the login TTL)
	writes    int                      // inserts since the last sweep
}

// maxInFlight bounds authorization requests waiting for a sign-in (503 past it).
const maxInFlight = 100_000

// sweepLocked drops what has expired: requests and used codes past ttl,
// access tokens past their expiry, refresh tokens past theirs, families with
// nothing left. It runs every 1,000 inserts; g.mu must be held.
func (g *grants) sweepLocked(now time.Time, ttl time.Duration) {
	g.writes++
	if g.writes < 1000 {
		return
	}
	g.writes = 0
	for id, a := range g.requests {
		if now.Sub(a.CreatedAt) >= ttl {
			delete(g.requests, id)
			if a.code != "" {
				delete(g.codes, a.code)
			}
		}
	}
	for code, at := range g.usedAt {
		if now.Sub(at) >= ttl {
			delete(g.usedAt, code)
			delete(g.usedCodes, code)
		}
	}
	live := map[string]bool{}
	for id, at := range g.access {
		if !now.Before(at.ExpiresAt) {
			delete(g.access, id)
		} else {
			live[at.Family] = true
		}
	}
	for h, rt := range g.refresh {
		if !now.Before(rt.ExpiresAt) {
			delete(g.refresh, h)
		} else {
			live[rt.Family] = true
		}
	}
	for _, fam := range g.usedCodes { // a code still remembered keeps its family revocable
		live[fam] = true
	}
	for id := range g.families {
		if !live[id] && g.requests[id] == nil {
			delete(g.families, id)
		}
	}
}

func newGrants() *grants {
	return &grants{requests: map[string]*authRequest{}, codes: map[string]string{}, usedCodes: map[string]string{},
		families: map[string]*family{}, access: map[string]*accessToken{}, refresh: map[string]*refreshToken{},
		usedAt: map[string]time.Time{}}
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// revokeFamilies ends every family keep selects; it returns how many.
func (g *grants) revokeFamilies(keep func(*family) bool) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, f := range g.families {
		if !f.revoked && keep(f) {
			f.revoked = true
			n++
		}
	}
	return n
}

func (g *grants) revokeClient(clientID string) {
	g.revokeFamilies(func(f *family) bool { return f.ClientID == clientID })
}

// request returns a copy-free pointer to authorization request id (callers hold no lock after).
func (g *grants) request(id string) (*authRequest, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.requests[id]
	return r, ok
}

// ---- op.Storage

type opStorage provider

var (
	_ op.Storage                        = (*opStorage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*opStorage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*opStorage)(nil)
)

type orgHintKey struct{}

// withOrgHint carries ?organization= of an authorization request to CreateAuthRequest.
func withOrgHint(ctx context.Context, org string) context.Context {
	return context.WithValue(ctx, orgHintKey{}, org)
}

func (p *opStorage) CreateAuthRequest(ctx context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: code_challenge with code_challenge_method S256")
	}
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("Trellis signs users in through their organization's IdP: prompt=none is not supported")
	}
	hint, _ := ctx.Value(orgHintKey{}).(string)
	a := &authRequest{ID: newID("ar"), CreatedAt: p.s.cfg.Now(), ClientID: r.ClientID, RedirectURI: r.RedirectURI,
		State: r.State, Nonce: r.Nonce, Scopes: r.Scopes, ResponseType: r.ResponseType, ResponseMode: r.ResponseMode,
		CodeChallenge: &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
		LoginHint:     r.LoginHint, OrgHint: hint, MaxAge: r.MaxAge}
	g := p.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(a.CreatedAt, p.s.cfg.LoginTTL)
	if len(g.requests) >= maxInFlight {
		return nil, oidc.ErrServerError().WithDescription("too many sign-ins in flight; try again")
	}
	g.requests[a.ID] = a
	return a, nil
}

func (p *opStorage) live(a *authRequest) bool {
	return p.s.cfg.Now().Sub(a.CreatedAt) < p.s.cfg.LoginTTL
}

func (p *opStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	a, ok := p.grants.request(id)
	if !ok || !p.live(a) {
		return nil, errors.New("authorization request not found or expired")
	}
	return a, nil
}

// AuthRequestByCode answers a code once. A code presented again ends
// everything its first exchange issued (RFC 6749 §4.1.2, §10.5).
func (p *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	g := p.grants
	g.mu.Lock()
	if fam, used := g.usedCodes[code]; used {
		f := g.families[fam]
		g.mu.Unlock()
		if f != nil {
			g.revokeFamilies(func(x *family) bool { return x.ID == fam })
			p.s.audit(ctx, f.ClientID, f.Org, "oauth.code.reuse", f.target(), map[string]any{"grant": fam, "revoked": true})
		}
		return nil, oidc.ErrInvalidGrant().WithDescription("authorization code already used; its tokens are revoked")
	}
	id, ok := g.codes[code]
	var a *authRequest
	if ok {
		a = g.requests[id]
	}
	g.mu.Unlock()
	if a == nil || !p.live(a) || !a.done {
		return nil, oidc.ErrInvalidGrant().WithDescription("unknown or expired authorization code")
	}
	return a, nil
}

func (p *opStorage) SaveAuthCode(_ context.Context, id, code string) error {
	g := p.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.requests[id]
	if !ok {
		return errors.New("authorization request not found")
	}
	a.code = code
	g.codes[code] = id
	return nil
}

// DeleteAuthRequest ends a request once its code was exchanged; the code is
// remembered as used (the family it started is named after the request).
func (p *opStorage) DeleteAuthRequest(_ context.Context, id string) error {
	g := p.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	if a, ok := g.requests[id]; ok && a.code != "" {
		delete(g.codes, a.code)
		g.usedCodes[a.code] = id
		g.usedAt[a.code] = p.s.cfg.Now()
	}
	delete(g.requests, id)
	return nil
}

// startOrContinue returns the family of a token request: a code exchange
// starts the family named after its request; a refresh continues its own.
func (p *opStorage) familyOf(req op.TokenRequest) (*family, error) {
	g := p.grants
	switch r := req.(type) {
	case *authRequest:
		g.mu.Lock()
		defer g.mu.Unlock()
		f, ok := g.families[r.ID]
		if !ok {
			f = &family{ID: r.ID, ClientID: r.ClientID, Subject: r.UserID, Org: r.Org, Actor: r.Actor, Impersonation: r.Impersonation}
			g.families[r.ID] = f
		}
		if f.revoked {
			return nil, oidc.ErrInvalidGrant().WithDescription("grant revoked")
		}
		return f, nil
	case *refreshRequest:
		g.mu.Lock()
		defer g.mu.Unlock()
		f := g.families[r.fam.ID]
		if f == nil || f.revoked {
			return nil, oidc.ErrInvalidGrant().WithDescription("grant revoked")
		}
		return f, nil
	case *ccRequest:
		f := &family{ID: newID("cc"), ClientID: r.keyID, Subject: r.GetSubject(), Org: r.org, Kind: kindClientCredentials, KeyExpires: r.keyExpires}
		g.mu.Lock()
		defer g.mu.Unlock()
		g.families[f.ID] = f
		return f, nil
	}
	return nil, oidc.ErrUnsupportedGrantType()
}

func (p *opStorage) newAccess(f *family, scopes []string) *accessToken {
	now := p.s.cfg.Now()
	exp := now.Add(p.s.cfg.AccessTokenTTL)
	if !f.KeyExpires.IsZero() && f.KeyExpires.Before(exp) {
		exp = f.KeyExpires // never past the key it was issued for
	}
	return &accessToken{ID: newID("at"), Family: f.ID, IssuedAt: now, ExpiresAt: exp, Scopes: scopes}
}

func (p *opStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	f, err := p.familyOf(req)
	if err != nil {
		return "", time.Time{}, err
	}
	at := p.newAccess(f, req.GetScopes())
	g := p.grants
	g.mu.Lock()
	g.sweepLocked(at.IssuedAt, p.s.cfg.LoginTTL)
	g.access[at.ID] = at
	g.mu.Unlock()
	details := map[string]any{"grant": f.ID, "refresh": false}
	if f.Kind != "" {
		details["grantType"], details["scope"] = f.Kind, strings.Join(at.Scopes, " ")
	}
	p.s.audit(ctx, f.ClientID, f.Org, "oauth.token.issue", f.target(), details)
	return at.ID, at.ExpiresAt, nil
}

// CreateAccessAndRefreshTokens issues an access token and a new refresh
// token. A refresh rotates: the presented token is spent, and presenting a
// spent token again revokes the whole family (reuse detection).
func (p *opStorage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	f, err := p.familyOf(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	now := p.s.cfg.Now()
	rt := &refreshToken{Family: f.ID, Scopes: req.GetScopes(), ExpiresAt: now.Add(p.s.cfg.RefreshTokenTTL)}
	switch r := req.(type) {
	case *authRequest:
		rt.AMR, rt.ACR, rt.AuthTime = r.AMR, r.ACR, r.AuthTime
	case *refreshRequest:
		rt.AMR, rt.ACR, rt.AuthTime = r.tok.AMR, r.tok.ACR, r.tok.AuthTime
	}
	g := p.grants
	g.mu.Lock()
	if current != "" {
		old := g.refresh[tokenHash(current)]
		if old == nil || old.used || old.Family != f.ID {
			g.mu.Unlock()
			p.reuse(ctx, f)
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		old.used = true
	}
	at := p.newAccess(f, req.GetScopes())
	secret := newSecret()
	g.sweepLocked(now, p.s.cfg.LoginTTL)
	g.access[at.ID] = at
	g.refresh[tokenHash(secret)] = rt
	g.mu.Unlock()
	action := "oauth.token.issue"
	if current != "" {
		action = "oauth.token.refresh"
	}
	p.s.audit(ctx, f.ClientID, f.Org, action, f.target(), map[string]any{"grant": f.ID, "refresh": true})
	return at.ID, secret, at.ExpiresAt, nil
}

// reuse revokes a family whose spent refresh token came back, and audits it.
func (p *opStorage) reuse(ctx context.Context, f *family) {
	p.grants.revokeFamilies(func(x *family) bool { return x.ID == f.ID })
	p.s.audit(ctx, f.ClientID, f.Org, "oauth.refresh.reuse", f.target(), map[string]any{"grant": f.ID, "revoked": true})
}

// TokenRequestByRefreshToken accepts a refresh token that is unspent,
// unexpired, of a live family, whose user and membership are still active.
func (p *opStorage) TokenRequestByRefreshToken(ctx context.Context, tok string) (op.RefreshTokenRequest, error) {
	g := p.grants
	h := tokenHash(tok)
	g.mu.Lock()
	rt := g.refresh[h]
	var f family
	if rt != nil && g.families[rt.Family] != nil {
		f = *g.families[rt.Family]
	}
	var copyRT refreshToken
	if rt != nil {
		copyRT = *rt
	}
	g.mu.Unlock()
	switch {
	case rt == nil || f.ID == "":
		return nil, op.ErrInvalidRefreshToken
	case copyRT.used:
		p.reuse(ctx, &f)
		return nil, op.ErrInvalidRefreshToken
	case f.revoked || !p.s.cfg.Now().Before(copyRT.ExpiresAt):
		return nil, op.ErrInvalidRefreshToken
	}
	_, err := p.s.liveGrant(ctx, f)
	if err == nil {
		err = p.s.withinSession(ctx, f.Org, copyRT.AuthTime)
	}
	if err != nil {
		p.grants.revokeFamilies(func(x *family) bool { return x.ID == f.ID })
		p.s.audit(ctx, f.ClientID, f.Org, "oauth.token.refresh.refused", f.target(), map[string]any{"grant": f.ID, "reason": err.Error()})
		return nil, op.ErrInvalidRefreshToken
	}
	return &refreshRequest{fam: f, tok: copyRT, hash: h, scopes: copyRT.Scopes}, nil
}

func (p *opStorage) TerminateSession(ctx context.Context, userID, clientID string) error {
	n := p.grants.revokeFamilies(func(f *family) bool { return f.Subject == userID && f.ClientID == clientID })
	if n > 0 {
		p.s.audit(ctx, clientID, "", "oauth.logout", "user:"+userID, map[string]any{"grants": n})
	}
	return nil
}

// RevokeToken (RFC 7009): a refresh token ends its family; an access token ends itself.
func (p *opStorage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	g := p.grants
	g.mu.Lock()
	var fam *family
	if rt := g.refresh[tokenHash(tokenOrID)]; rt != nil {
		fam = g.families[rt.Family]
		if fam != nil && fam.ClientID == clientID {
			fam.revoked = true
		} else {
			fam = nil
		}
	} else if at := g.access[tokenOrID]; at != nil {
		if f := g.families[at.Family]; f != nil && f.ClientID == clientID {
			delete(g.access, tokenOrID)
			fam = f
		}
	}
	g.mu.Unlock()
	if fam != nil {
		p.s.audit(ctx, clientID, fam.Org, "oauth.token.revoke", "user:"+fam.Subject, map[string]any{"grant": fam.ID})
	}
	return nil // unknown tokens are not an error (RFC 7009 §2.2)
}

func (p *opStorage) GetRefreshTokenInfo(_ context.Context, clientID, tok string) (string, string, error) {
	g := p.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	rt := g.refresh[tokenHash(tok)]
	if rt == nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	f := g.families[rt.Family]
	if f == nil || f.ClientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return f.Subject, tok, nil
}

type sigKey struct {
	kid string
	key *ecdsa.PrivateKey
}

func (k sigKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k sigKey) Key() any                                    { return k.key }
func (k sigKey) ID() string                                  { return k.kid }

type pubKey struct{ jwk jose.JSONWebKey }

func (k pubKey) ID() string                         { return k.jwk.KeyID }
func (k pubKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k pubKey) Use() string                        { return "sig" }
func (k pubKey) Key() any                           { return k.jwk.Key }

func (p *opStorage) SigningKey(context.Context) (op.SigningKey, error) {
	kid, key, err := p.s.keys.CurrentKey()
	if err != nil {
		return nil, err
	}
	return sigKey{kid: kid, key: key}, nil
}

func (p *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}

func (p *opStorage) KeySet(context.Context) ([]op.Key, error) {
	var out []op.Key
	for _, k := range p.s.keys.PublicKeys() {
		out = append(out, pubKey{jwk: k})
	}
	return out, nil
}

func (p *opStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	a, err := p.s.application(ctx, clientID)
	if err != nil {
		if _, _, kerr := p.s.dir.LiveKey(ctx, clientID); kerr == nil {
			return &accountClient{keyID: clientID}, nil // a service account's key (revocation, introspection)
		}
		return nil, err
	}
	return &client{app: a, s: p.s}, nil
}

func (p *opStorage) AuthorizeClientIDSecret(ctx context.Context, clientID, secret string) error {
	a, err := p.s.application(ctx, clientID)
	if err != nil && secret != "" && !strings.Contains(clientID, ".") { // a service account's key
		if pr, kerr := p.s.dir.AuthenticateKey(ctx, directory.KeyCredential(clientID, secret)); kerr == nil && pr.KeyID == clientID {
			return nil
		}
	}
	if err != nil || !secretMatches(a, secret) {
		return oidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	return nil
}

func (p *opStorage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, _ string, scopes []string) error {
	return p.s.setUser(ctx, info, userID, scopes)
}

// SetUserinfoFromRequest adds the organization claims to the ID token.
func (p *opStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	org := orgOfRequest(req)
	c, err := p.s.liveClaims(ctx, req.GetSubject(), org, req.GetClientID())
	if err != nil {
		return oidc.ErrAccessDenied().WithDescription("%s", err.Error())
	}
	for k, v := range c {
		info.AppendClaims(k, v)
	}
	return nil
}

func orgOfRequest(req any) string {
	switch r := req.(type) {
	case *authRequest:
		return r.Org
	case *refreshRequest:
		return r.fam.Org
	}
	return ""
}

// accessLive returns the live access token id and its family: unexpired,
// of an unrevoked family.
func (p *opStorage) accessLive(tokenID string) (accessToken, family, bool) {
	g := p.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	at := g.access[tokenID]
	if at == nil || !p.s.cfg.Now().Before(at.ExpiresAt) {
		return accessToken{}, family{}, false
	}
	f := g.families[at.Family]
	if f == nil || f.revoked {
		return accessToken{}, family{}, false
	}
	return *at, *f, true
}

func (p *opStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	at, f, ok := p.accessLive(tokenID)
	if !ok || f.Subject != subject || f.Kind == kindClientCredentials { // a service account has no userinfo
		return oidc.ErrAccessDenied().WithDescription("token is not active")
	}
	c, err := p.s.liveGrant(ctx, f)
	if err != nil {
		return oidc.ErrAccessDenied().WithDescription("token is not active")
	}
	if err := p.s.setUser(ctx, info, f.Subject, at.Scopes); err != nil {
		return err
	}
	for k, v := range c {
		info.AppendClaims(k, v)
	}
	return nil
}

// SetIntrospectionFromToken (RFC 7662): active only while the token, its
// grant, its user, membership, organization and application are; only the
// application the token was issued to may introspect it.
func (p *opStorage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	at, f, ok := p.accessLive(tokenID)
	if ok && f.Kind == kindClientCredentials {
		return p.introspectAccount(ctx, resp, at, f, subject, clientID)
	}
	if !ok || f.Subject != subject || f.ClientID != clientID {
		return errors.New("inactive")
	}
	c, err := p.s.liveGrant(ctx, f)
	if err != nil {
		return errors.New("inactive")
	}
	if f.Actor != "" {
		resp.Actor = &oidc.ActorClaims{Subject: f.Actor}
	}
	resp.Subject, resp.ClientID, resp.Scope = f.Subject, f.ClientID, at.Scopes
	resp.Audience = oidc.Audience{f.ClientID}
	resp.Expiration, resp.IssuedAt = oidc.FromTime(at.ExpiresAt), oidc.FromTime(at.IssuedAt)
	resp.TokenType, resp.JWTID = "Bearer", at.ID
	resp.Claims = c
	return nil
}

func (p *opStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest adds the organization claims to access tokens.
func (p *opStorage) GetPrivateClaimsFromRequest(ctx context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	if r, ok := req.(*ccRequest); ok {
		pr, _, err := p.s.dir.LiveKey(ctx, r.keyID)
		if err != nil {
			return nil, oidc.ErrInvalidClient().WithDescription("client authentication failed")
		}
		return p.s.accountClaims(ctx, pr, r.scopes)
	}
	var clientID string
	if r, ok := req.(interface{ GetClientID() string }); ok {
		clientID = r.GetClientID()
	}
	c, err := p.s.liveClaims(ctx, req.GetSubject(), orgOfRequest(req), clientID)
	if err != nil {
		return nil, oidc.ErrAccessDenied().WithDescription("%s", err.Error())
	}
	return c, nil
}

func (p *opStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, oidc.ErrUnauthorizedClient().WithDescription("JWT profile is not supported")
}

func (p *opStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient().WithDescription("JWT profile is not supported")
}

func (p *opStorage) Health(context.Context) error { return nil }

// ---- clients

type client struct {
	app store.Application
	s   *Service
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.app.ClientID }
func (c *client) RedirectURIs() []string           { return c.app.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.app.PostLogout }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string {
	return c.s.cfg.Issuer + "/sso/login?authRequestID=" + id
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.s.cfg.IDTokenTTL }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(s string) bool         { return s == APIScope }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

func (c *client) ApplicationType() op.ApplicationType {
	switch c.app.Type {
	case AppSPA:
		return op.ApplicationTypeUserAgent
	case AppNative:
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.app.Type == AppWeb {
		return oidc.AuthMethodBasic
	}
	return oidc.AuthMethodNone
}

// ---- service helpers

// application loads an application by client id.
func (s *Service) application(ctx context.Context, clientID string) (store.Application, error) {
	var a store.Application
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		a, err = tx.GetApplicationByClientID(ctx, clientID)
		return err
	})
	if err != nil {
		return a, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	return a, nil
}

// liveClaims are the organization claims of (user, org) now — org, org_slug,
// org_roles — or an error when the user, the membership, the organization
// (or an ancestor) or the application is no longer active.
func (s *Service) liveClaims(ctx context.Context, userID, orgID, clientID string) (map[string]any, error) {
	var out map[string]any
	err := s.store.Read(ctx, func(tx store.Tx) error {
		if clientID != "" {
			if _, err := tx.GetApplicationByClientID(ctx, clientID); err != nil {
				return errors.New("application removed")
			}
		}
		u, err := tx.GetUser(ctx, userID)
		if err != nil || u.Status != store.StatusActive {
			return errors.New("user not active")
		}
		m, err := tx.GetMembership(ctx, orgID, userID)
		if err != nil || m.Status != store.StatusActive {
			return errors.New("membership not active")
		}
		org, err := activeOrg(ctx, tx, orgID)
		if err != nil {
			return err
		}
		roles := m.Roles
		if roles == nil {
			roles = []string{}
		}
		out = map[string]any{"org": org.ID, "org_slug": org.Slug, "org_roles": roles}
		return nil
	})
	return out, err
}

// setUser fills the standard claims of userID for scopes.
func (s *Service) setUser(ctx context.Context, info *oidc.UserInfo, userID string, scopes []string) error {
	var u store.User
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		u, err = tx.GetUser(ctx, userID)
		return err
	})
	if err != nil {
		return oidc.ErrAccessDenied().WithDescription("unknown user")
	}
	info.Subject = u.ID
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = true // Trellis holds an email only as its IdP or invitation proved it
		case oidc.ScopeProfile:
			info.Name = u.Name
		}
	}
	return nil
}

// audit records a provider event on the organization's chain; a failure is logged.
func (s *Service) audit(ctx context.Context, clientID, org, action, target string, details map[string]any) {
	p := directory.Principal{Kind: "application", ID: clientID}
	if err := s.dir.RecordEvent(ctx, p, org, action, target, details); err != nil {
		s.cfg.Logger.Warn("sign-in audit failed", "action", action, "err", err)
	}
}

// withinSession: the organization's sessionMaxAge has not passed since the sign-in.
func (s *Service) withinSession(ctx context.Context, org string, authTime time.Time) error {
	pol, err := s.policyOf(ctx, org)
	if err != nil {
		return err
	}
	if pol.SessionMaxAge > 0 && !s.cfg.Now().Before(authTime.Add(pol.SessionMaxAge)) {
		return errors.New("session older than the organization's sessionMaxAge")
	}
	return nil
}
