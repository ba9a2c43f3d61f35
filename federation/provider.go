package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	trellis "github.com/trellis-iam/trellis"
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
	p := &provider{s: s, grants: newGrants(s.store, s.cfg.Now)}
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

// ---- in-flight state (grants.go keeps it in the store)

// authRequest is an application's authorization request, completed by a
// sign-in. Its exported fields are what the store keeps (as JSON).
type authRequest struct {
	ID            string    `json:"-"`
	CreatedAt     time.Time `json:"-"`
	ClientID      string    `json:"-"`
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
	Completed   bool
	// Choices are the organizations a signed-in user may pick (organization picker).
	Choices []string
	// PendingUser is who signed in while a pick is outstanding.
	PendingUser string
	Method      string // oidc | saml | impersonation, of the sign-in
	// Actor and Impersonation: a sign-in through an impersonation (the
	// actor's user id acts as UserID; tokens carry "act").
	Actor, Impersonation string
	// ConnectionID and ConnectionType: the connection it came through.
	ConnectionID, ConnectionType string
	// Browser is the SHA-256 of the login cookie of the browser that signed
	// in: only it may pick an organization or collect the code.
	Browser []byte

	// of the stored row
	codeHash []byte
	version  int64
	redeemed bool
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
func (a *authRequest) Done() bool                            { return a.Completed }

// connection is the connection the sign-in came through, as audits name it.
func (a *authRequest) connection() store.Connection {
	return store.Connection{ID: a.ConnectionID, Type: a.ConnectionType}
}

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

// refreshRequest is a refresh grant as the op sees it.
type refreshRequest struct {
	fam    family
	tok    store.RefreshToken
	scopes []string
}

func (r *refreshRequest) GetAMR() []string            { return r.tok.AMR }
func (r *refreshRequest) GetAudience() []string       { return []string{r.fam.ClientID} }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.tok.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.fam.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.fam.Subject }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

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
	if err := p.grants.insertRequest(ctx, a, p.s.cfg.LoginTTL); err != nil {
		return nil, err
	}
	return a, nil
}

func (p *opStorage) live(a *authRequest) bool {
	return p.s.cfg.Now().Sub(a.CreatedAt) < p.s.cfg.LoginTTL
}

func (p *opStorage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	a, ok := p.grants.request(ctx, id)
	if !ok || !p.live(a) {
		return nil, errors.New("authorization request not found or expired")
	}
	return a, nil
}

// AuthRequestByCode answers a code until it is redeemed. A code presented
// again ends everything its first exchange issued (RFC 6749 §4.1.2, §10.5).
func (p *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	var a *authRequest
	err := p.grants.read(ctx, func(tx grantRows) error {
		row, err := tx.AuthRequestByCode(ctx, tokenHash(code), p.s.cfg.Now())
		if err != nil {
			return err
		}
		a, err = decodeRequest(row)
		return err
	})
	if err == nil && a.redeemed {
		p.codeReused(ctx, a.ID)
		return nil, oidc.ErrInvalidGrant().WithDescription("authorization code already used; its tokens are revoked")
	}
	if err != nil || !p.live(a) || !a.Completed {
		return nil, oidc.ErrInvalidGrant().WithDescription("unknown or expired authorization code")
	}
	return a, nil
}

// codeReused revokes the family a redeemed code started, and audits it.
func (p *opStorage) codeReused(ctx context.Context, id string) {
	f, err := p.grants.grant(ctx, id)
	if err != nil {
		return // redeemed, but its exchange failed: nothing was issued
	}
	if _, err := p.grants.revoke(ctx, store.GrantFilter{ID: id}); err != nil {
		p.s.cfg.Logger.Error("revoking the grant of a reused authorization code failed", "grant", id, "err", err)
	}
	p.s.audit(ctx, f.ClientID, f.Org, "oauth.code.reuse", f.target(), map[string]any{"grant": id, "revoked": true})
}

func (p *opStorage) SaveAuthCode(ctx context.Context, id, code string) error {
	_, err := p.grants.updateRequest(ctx, id, p.s.cfg.LoginTTL, func(a *authRequest) error {
		a.codeHash = tokenHash(code)
		return nil
	})
	return err
}

// DeleteAuthRequest follows a code's exchange, which has already redeemed
// it (issue): the request is kept, redeemed, for the login TTL, so that the
// code presented again is recognized; the store's sweep deletes it.
func (p *opStorage) DeleteAuthRequest(context.Context, string) error { return nil }

// errReused: the code or refresh token of a token request was already
// used (here or on another node).
var errReused = errors.New("already used")

// issue records, in one transaction, the family of a token request and the
// tokens issued under it: a code exchange redeems the code (once) and
// starts the family named after its request; a refresh spends the
// presented token (once) and continues its family; client credentials
// start a family of their own. withRefresh adds a refresh token, whose
// secret it returns.
func (p *opStorage) issue(ctx context.Context, req op.TokenRequest, current string, withRefresh bool) (family, store.AccessToken, string, error) {
	now := p.s.cfg.Now()
	var f family
	var rt *store.RefreshToken
	var secret string
	if withRefresh {
		secret = newSecret()
		rt = &store.RefreshToken{Hash: tokenHash(secret), Scopes: req.GetScopes(), IssuedAt: now, ExpiresAt: now.Add(p.s.cfg.RefreshTokenTTL)}
	}
	switch r := req.(type) {
	case *authRequest:
		f = family{ID: r.ID, ClientID: r.ClientID, Subject: r.UserID, Org: r.Org, Actor: r.Actor, Impersonation: r.Impersonation}
		if rt != nil {
			rt.AMR, rt.ACR, rt.AuthTime = r.AMR, r.ACR, r.AuthTime
		}
	case *refreshRequest:
		f = r.fam
		if rt != nil {
			rt.AMR, rt.ACR, rt.AuthTime = r.tok.AMR, r.tok.ACR, r.tok.AuthTime
		}
	case *ccRequest:
		f = family{ID: newID("cc"), ClientID: r.keyID, Subject: r.GetSubject(), Org: r.org, Kind: kindClientCredentials, KeyExpires: r.keyExpires}
	default:
		return f, store.AccessToken{}, "", oidc.ErrUnsupportedGrantType()
	}
	at := p.newAccess(f, req.GetScopes(), now)
	err := p.grants.write(ctx, func(tx grantRows) error {
		switch r := req.(type) {
		case *authRequest:
			err := tx.RedeemAuthRequest(ctx, r.ID, now, now.Add(p.s.cfg.LoginTTL))
			switch {
			case errors.Is(err, trellis.ErrConflict):
				return errReused
			case errors.Is(err, trellis.ErrNotFound):
				return oidc.ErrInvalidGrant().WithDescription("unknown or expired authorization code")
			case err != nil:
				return err
			}
			if err := tx.InsertGrant(ctx, grantOf(f, now)); err != nil {
				return err
			}
		case *refreshRequest:
			g, err := tx.GetGrant(ctx, f.ID)
			if err != nil || g.RevokedAt != nil {
				return oidc.ErrInvalidGrant().WithDescription("grant revoked")
			}
			if current != "" {
				old, err := tx.GetRefreshToken(ctx, tokenHash(current), now)
				if err != nil || old.Grant != f.ID {
					return errReused
				}
				err = tx.SpendRefreshToken(ctx, tokenHash(current), now)
				switch {
				case errors.Is(err, trellis.ErrConflict), errors.Is(err, trellis.ErrNotFound):
					return errReused
				case err != nil:
					return err
				}
			}
		case *ccRequest:
			if err := tx.InsertGrant(ctx, grantOf(f, now)); err != nil {
				return err
			}
		}
		if err := tx.InsertAccessToken(ctx, at); err != nil {
			return err
		}
		if rt != nil {
			rt.Grant = f.ID
			return tx.InsertRefreshToken(ctx, *rt)
		}
		return nil
	})
	if errors.Is(err, errReused) {
		if _, ok := req.(*authRequest); ok {
			p.codeReused(ctx, f.ID)
			return f, at, "", oidc.ErrInvalidGrant().WithDescription("authorization code already used; its tokens are revoked")
		}
		p.reuse(ctx, &f)
		return f, at, "", oidc.ErrInvalidGrant().WithDescription("refresh token already used; its grant is revoked")
	}
	return f, at, secret, err
}

func (p *opStorage) newAccess(f family, scopes []string, now time.Time) store.AccessToken {
	exp := now.Add(p.s.cfg.AccessTokenTTL)
	if !f.KeyExpires.IsZero() && f.KeyExpires.Before(exp) {
		exp = f.KeyExpires // never past the key it was issued for
	}
	return store.AccessToken{ID: newID("at"), Grant: f.ID, IssuedAt: now, ExpiresAt: exp, Scopes: scopes}
}

func (p *opStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	f, at, _, err := p.issue(ctx, req, "", false)
	if err != nil {
		return "", time.Time{}, err
	}
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
	f, at, secret, err := p.issue(ctx, req, current, true)
	if err != nil {
		return "", "", time.Time{}, err
	}
	action := "oauth.token.issue"
	if current != "" {
		action = "oauth.token.refresh"
	}
	p.s.audit(ctx, f.ClientID, f.Org, action, f.target(), map[string]any{"grant": f.ID, "refresh": true})
	return at.ID, secret, at.ExpiresAt, nil
}

// reuse revokes a family whose spent refresh token came back, and audits it.
func (p *opStorage) reuse(ctx context.Context, f *family) {
	if _, err := p.grants.revoke(ctx, store.GrantFilter{ID: f.ID}); err != nil {
		p.s.cfg.Logger.Error("revoking the grant of a reused refresh token failed", "grant", f.ID, "err", err)
	}
	p.s.audit(ctx, f.ClientID, f.Org, "oauth.refresh.reuse", f.target(), map[string]any{"grant": f.ID, "revoked": true})
}

// refreshToken reads the refresh token tok and its family.
func (p *opStorage) refreshToken(ctx context.Context, tok string) (store.RefreshToken, family, error) {
	var rt store.RefreshToken
	var f family
	err := p.grants.read(ctx, func(tx grantRows) error {
		var err error
		if rt, err = tx.GetRefreshToken(ctx, tokenHash(tok), p.s.cfg.Now()); err != nil {
			return err
		}
		g, err := tx.GetGrant(ctx, rt.Grant)
		f = familyOf(g)
		return err
	})
	return rt, f, err
}

// TokenRequestByRefreshToken accepts a refresh token that is unspent,
// unexpired, of a live family, whose user and membership are still active.
func (p *opStorage) TokenRequestByRefreshToken(ctx context.Context, tok string) (op.RefreshTokenRequest, error) {
	rt, f, err := p.refreshToken(ctx, tok)
	switch {
	case err != nil:
		return nil, op.ErrInvalidRefreshToken
	case rt.UsedAt != nil:
		p.reuse(ctx, &f)
		return nil, op.ErrInvalidRefreshToken
	case f.revoked:
		return nil, op.ErrInvalidRefreshToken
	}
	_, err = p.s.liveGrant(ctx, f)
	if err == nil {
		err = p.s.withinSession(ctx, f.Org, rt.AuthTime)
	}
	if err != nil {
		if _, rerr := p.grants.revoke(ctx, store.GrantFilter{ID: f.ID}); rerr != nil {
			p.s.cfg.Logger.Error("revoking a refused grant failed", "grant", f.ID, "err", rerr)
		}
		p.s.audit(ctx, f.ClientID, f.Org, "oauth.token.refresh.refused", f.target(), map[string]any{"grant": f.ID, "reason": err.Error()})
		return nil, op.ErrInvalidRefreshToken
	}
	return &refreshRequest{fam: f, tok: rt, scopes: rt.Scopes}, nil
}

func (p *opStorage) TerminateSession(ctx context.Context, userID, clientID string) error {
	if userID == "" || clientID == "" {
		return nil
	}
	n, err := p.grants.revoke(ctx, store.GrantFilter{Subject: userID, ClientID: clientID})
	if err != nil {
		return err
	}
	if n > 0 {
		p.s.audit(ctx, clientID, "", "oauth.logout", "user:"+userID, map[string]any{"grants": n})
	}
	return nil
}

// RevokeToken (RFC 7009): a refresh token ends its family; an access token ends itself.
func (p *opStorage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	now := p.s.cfg.Now()
	var fam *family
	err := p.grants.write(ctx, func(tx grantRows) error {
		fam = nil
		if rt, err := tx.GetRefreshToken(ctx, tokenHash(tokenOrID), now); err == nil {
			g, err := tx.GetGrant(ctx, rt.Grant)
			if err != nil || g.ClientID != clientID {
				return nil
			}
			f := familyOf(g)
			fam = &f
			_, err = tx.RevokeGrants(ctx, store.GrantFilter{ID: g.ID}, now)
			return err
		}
		at, err := tx.GetAccessToken(ctx, tokenOrID, now)
		if err != nil {
			return nil
		}
		g, err := tx.GetGrant(ctx, at.Grant)
		if err != nil || g.ClientID != clientID {
			return nil
		}
		f := familyOf(g)
		fam = &f
		return tx.DeleteAccessToken(ctx, tokenOrID)
	})
	if err != nil {
		return oidc.ErrServerError().WithDescription("revocation failed; try again")
	}
	if fam != nil {
		p.s.audit(ctx, clientID, fam.Org, "oauth.token.revoke", "user:"+fam.Subject, map[string]any{"grant": fam.ID})
	}
	return nil // unknown tokens are not an error (RFC 7009 §2.2)
}

func (p *opStorage) GetRefreshTokenInfo(ctx context.Context, clientID, tok string) (string, string, error) {
	_, f, err := p.refreshToken(ctx, tok)
	if err != nil || f.ClientID != clientID {
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
// of an unrevoked family. A store that cannot answer makes it not live.
func (p *opStorage) accessLive(ctx context.Context, tokenID string) (store.AccessToken, family, bool) {
	var at store.AccessToken
	var f family
	err := p.grants.read(ctx, func(tx grantRows) error {
		var err error
		if at, err = tx.GetAccessToken(ctx, tokenID, p.s.cfg.Now()); err != nil {
			return err
		}
		g, err := tx.GetGrant(ctx, at.Grant)
		f = familyOf(g)
		return err
	})
	if err != nil || f.revoked {
		return store.AccessToken{}, family{}, false
	}
	return at, f, true
}

func (p *opStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	at, f, ok := p.accessLive(ctx, tokenID)
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
	at, f, ok := p.accessLive(ctx, tokenID)
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
