package federation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// Client credentials (RFC 6749 §4.4) for service accounts. A service
// account's API key is its OAuth 2.0 client: client_id is the key id and
// client_secret the key ("trk.<id>.<secret>") or its secret part, sent with
// client_secret_basic or client_secret_post. The key is checked exactly as
// the API checks it (directory.AuthenticateKey). The token is a JWT access
// token (≤ the provider's access-token TTL, never past the key's expiry)
// whose sub is service_account:<id>, with org and the scopes granted: the
// key's permissions, or the requested subset of them. A token lives only
// while its key is active, its account exists and its organization is not
// suspended (introspection, the Trellis API); it is revocable (RFC 7009).

// kindClientCredentials marks a grant family issued to a service account.
const kindClientCredentials = "client_credentials"

var _ op.ClientCredentialsStorage = (*opStorage)(nil)

// ccRequest is a client-credentials grant of one API key.
type ccRequest struct {
	keyID, account, org string
	scopes              []string
	keyExpires          time.Time // zero: the key never expires
}

func (r *ccRequest) GetSubject() string    { return "service_account:" + r.account }
func (r *ccRequest) GetAudience() []string { return []string{r.keyID} }
func (r *ccRequest) GetScopes() []string   { return r.scopes }
func (r *ccRequest) GetClientID() string   { return r.keyID }

// ClientCredentials authenticates a service account's key as a client.
func (p *opStorage) ClientCredentials(ctx context.Context, clientID, secret string) (op.Client, error) {
	fail := oidc.ErrInvalidClient().WithDescription("client authentication failed")
	if clientID == "" || secret == "" || strings.Contains(clientID, ".") {
		return nil, fail
	}
	pr, err := p.s.dir.AuthenticateKey(ctx, directory.KeyCredential(clientID, secret))
	if err == nil && pr.KeyID != clientID { // a whole key presented under another key's id
		err = errors.New("client_id names another key")
	}
	if err != nil {
		p.s.ccDenied(ctx, clientID, "invalid_client")
		return nil, fail
	}
	if _, err := p.s.accountClaims(ctx, pr, nil); err != nil {
		p.s.ccDenied(ctx, clientID, err.Error())
		return nil, oidc.ErrUnauthorizedClient().WithDescription("%s", err.Error())
	}
	return &accountClient{keyID: clientID}, nil
}

// ClientCredentialsTokenRequest grants the requested scopes when the key
// holds every one of them (none requested: all the key holds).
func (p *opStorage) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	pr, exp, err := p.s.dir.LiveKey(ctx, clientID)
	if err != nil {
		p.s.ccDenied(ctx, clientID, "invalid_client")
		return nil, oidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	granted := pr.Permissions
	if len(scopes) > 0 {
		for _, sc := range scopes {
			if !slices.Contains(pr.Permissions, sc) {
				p.s.ccDenied(ctx, clientID, "scope_not_held")
				return nil, oidc.ErrInvalidScope().WithDescription("the service account's key does not hold scope %q (it holds %s)", sc, strings.Join(pr.Permissions, " "))
			}
		}
		granted = slices.Compact(slices.Sorted(slices.Values(scopes)))
	}
	return &ccRequest{keyID: clientID, account: pr.ID, org: pr.Org, scopes: granted, keyExpires: exp}, nil
}

// ccDenied audits a refused client-credentials request on the organization
// of the key it names. A client id that names no key is not audited: it
// names no organization, and auditing it would let anyone write to the log.
func (s *Service) ccDenied(ctx context.Context, keyID, reason string) {
	var k store.APIKey
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		k, err = tx.GetAPIKey(ctx, keyID)
		return err
	})
	if err != nil {
		return
	}
	s.audit(ctx, keyID, k.Org, "oauth.client_credentials.denied", "service_account:"+k.ServiceAccount, map[string]any{"key": keyID, "reason": reason})
}

// accountClaims are the claims of a service account's token now — org,
// org_slug, scope — or an error when its organization (or an ancestor) is
// suspended or removed. scopes nil: the scope claim is left out.
func (s *Service) accountClaims(ctx context.Context, pr directory.Principal, scopes []string) (map[string]any, error) {
	var out map[string]any
	err := s.store.Read(ctx, func(tx store.Tx) error {
		org, err := activeOrg(ctx, tx, pr.Org)
		if err != nil {
			return err
		}
		out = map[string]any{"org": org.ID, "org_slug": org.Slug}
		if scopes != nil {
			out["scope"] = strings.Join(scopes, " ")
		}
		return nil
	})
	return out, err
}

// liveAccount is the principal and claims of a client-credentials family
// while its key, account and organization are live.
func (s *Service) liveAccount(ctx context.Context, f family, scopes []string) (directory.Principal, map[string]any, error) {
	pr, _, err := s.dir.LiveKey(ctx, f.ClientID)
	if err != nil {
		return pr, nil, errors.New("key revoked, expired or deleted")
	}
	if "service_account:"+pr.ID != f.Subject || pr.Org != f.Org {
		return pr, nil, errors.New("key moved")
	}
	c, err := s.accountClaims(ctx, pr, scopes)
	if err != nil {
		return pr, nil, err
	}
	// the token acts with its scopes, never more than the key holds now
	// (never nil: a nil list would mean no limit at all)
	perms := []string{}
	for _, sc := range scopes {
		if slices.Contains(pr.Permissions, sc) {
			perms = append(perms, sc)
		}
	}
	pr.Permissions = perms
	return pr, c, nil
}

// activeOrg loads orgID and fails when it or an ancestor is suspended or gone.
func activeOrg(ctx context.Context, tx store.Tx, orgID string) (store.Org, error) {
	org, err := tx.GetOrg(ctx, orgID)
	if err != nil {
		return org, errors.New("organization removed")
	}
	for cur := org; ; {
		if cur.Status == store.StatusSuspended {
			return org, errors.New("organization suspended")
		}
		if cur.Parent == "" {
			return org, nil
		}
		if cur, err = tx.GetOrg(ctx, cur.Parent); err != nil {
			return org, errors.New("organization removed")
		}
	}
}

// accountClient is a service account's key as an OAuth 2.0 client: it may
// only use the client-credentials grant.
type accountClient struct{ keyID string }

var _ op.Client = (*accountClient)(nil)

func (c *accountClient) GetID() string                       { return c.keyID }
func (c *accountClient) RedirectURIs() []string              { return nil }
func (c *accountClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *accountClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *accountClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *accountClient) ResponseTypes() []oidc.ResponseType  { return nil }
func (c *accountClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (c *accountClient) LoginURL(string) string              { return "" }
func (c *accountClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *accountClient) IDTokenLifetime() time.Duration      { return 0 }
func (c *accountClient) DevMode() bool                       { return false }
func (c *accountClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *accountClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *accountClient) IsScopeAllowed(string) bool           { return false }
func (c *accountClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *accountClient) ClockSkew() time.Duration             { return 0 }

// introspectAccount answers introspection of a service account's token: to
// the key it was issued to, or to a registered application (a resource
// server the account calls), and only while the key, the account and the
// organization are live.
func (p *opStorage) introspectAccount(ctx context.Context, resp *oidc.IntrospectionResponse, at store.AccessToken, f family, subject, clientID string) error {
	if f.Subject != subject {
		return errors.New("inactive")
	}
	if clientID != f.ClientID {
		if _, err := p.s.application(ctx, clientID); err != nil {
			return errors.New("inactive")
		}
	}
	_, c, err := p.s.liveAccount(ctx, f, at.Scopes)
	if err != nil {
		return errors.New("inactive")
	}
	resp.Subject, resp.ClientID, resp.Scope = f.Subject, f.ClientID, at.Scopes
	resp.Audience = oidc.Audience{f.ClientID}
	resp.Expiration, resp.IssuedAt = oidc.FromTime(at.ExpiresAt), oidc.FromTime(at.IssuedAt)
	resp.TokenType, resp.JWTID = "Bearer", at.ID
	delete(c, "scope") // resp.Scope says it
	resp.Claims = c
	return nil
}
