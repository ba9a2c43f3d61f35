package federation

import (
	"context"
	"errors"
	"fmt"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/trellis-iam/trellis/store"
)

// Identity is what a connector learned from a verified IdP sign-in.
type Identity struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	ACR           string
	AMR           []string
	Claims        map[string]any // every claim, for roleMapping
}

// CallbackConnector is a connector whose IdP answers at a callback URL with
// a code (OIDC). SAML connectors post assertions instead.
type CallbackConnector interface {
	// LoginURL is where the browser goes to sign in at the IdP.
	LoginURL(ctx context.Context, state, nonce, verifier string) (string, error)
	// HandleCallback exchanges code and verifies what the IdP returned.
	HandleCallback(ctx context.Context, code, nonce, verifier string) (Identity, error)
}

// oidcConnector signs users in at a customer's OIDC IdP (go-oidc): issuer
// discovery (the document's issuer must be the configured one), code flow
// with PKCE, ID token verified for issuer, audience, expiry, signature
// (asymmetric algorithms from the IdP's JWKS only: none and HS256 fail) and
// nonce.
type oidcConnector struct {
	conn     store.Connection
	secret   string
	redirect string
	provider *gooidc.Provider
}

var _ CallbackConnector = (*oidcConnector)(nil)

func (s *Service) oidcConnector(ctx context.Context, c store.Connection) (*oidcConnector, error) {
	secret, err := s.sealer.Open(c.SealedSecret, secretAAD(c.ID))
	if err != nil {
		return nil, err
	}
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, s.cfg.HTTPClient), c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errIdP, err)
	}
	return &oidcConnector{conn: c, secret: string(secret), redirect: s.cfg.Issuer + "/sso/oidc/callback", provider: p}, nil
}

// errIdP is a failure on the IdP's side (discovery, exchange, verification).
var errIdP = errors.New("identity provider")

func (o *oidcConnector) config() *oauth2.Config {
	return &oauth2.Config{ClientID: o.conn.ClientID, ClientSecret: o.secret, Endpoint: o.provider.Endpoint(),
		RedirectURL: o.redirect, Scopes: []string{gooidc.ScopeOpenID, "email", "profile"}}
}

func (o *oidcConnector) LoginURL(_ context.Context, state, nonce, verifier string) (string, error) {
	return o.config().AuthCodeURL(state, gooidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

func (o *oidcConnector) HandleCallback(ctx context.Context, code, nonce, verifier string) (Identity, error) {
	tok, err := o.config().Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: code exchange: %v", errIdP, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: no id_token", errIdP)
	}
	idt, err := o.provider.Verifier(&gooidc.Config{ClientID: o.conn.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: id_token: %v", errIdP, err)
	}
	if nonce == "" || idt.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: id_token nonce does not match", errIdP)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: id_token claims: %v", errIdP, err)
	}
	id := Identity{Subject: idt.Subject, Claims: claims}
	id.Email, _ = claims["email"].(string)
	id.EmailVerified, _ = claims["email_verified"].(bool)
	id.Name, _ = claims["name"].(string)
	id.ACR, _ = claims["acr"].(string)
	if amr, ok := claims["amr"].([]any); ok {
		for _, m := range amr {
			if s, ok := m.(string); ok {
				id.AMR = append(id.AMR, s)
			}
		}
	}
	return id, nil
}

// mapRoles applies a connection's roleMapping to a sign-in's claims: a rule
// matches when its claim is a string equal to Value or a list containing it.
func mapRoles(rules []store.RoleRule, claims map[string]any) []string {
	var out []string
	add := func(roles []string) {
		for _, r := range roles {
			if !contains(out, r) {
				out = append(out, r)
			}
		}
	}
	for _, r := range rules {
		switch v := claims[r.Claim].(type) {
		case string:
			if v == r.Value {
				add(r.Roles)
			}
		case []any:
			for _, x := range v {
				if s, ok := x.(string); ok && s == r.Value {
					add(r.Roles)
					break
				}
			}
		case []string:
			if contains(v, r.Value) {
				add(r.Roles)
			}
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
