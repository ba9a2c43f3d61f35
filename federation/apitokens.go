package federation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
)

// The provider's access tokens at the Trellis API. An access token the
// OpenID provider issued — to an application for a signed-in user, or to a
// service account's key by client credentials — authenticates calls to the
// Trellis API with the authority of that user in that organization (as a
// POST /v1/tokens token would) when the application asked for APIScope, or
// of that key limited to the token's scopes. The JWT alone is never trusted: besides its signature (ES256, a
// published key), iss, exp, aud and client_id, the token must be one the
// provider still holds live (not revoked, its grant not ended), and its
// user, membership, organization, application — or key and account — are
// read again at every call, so revocation and deprovisioning take effect at
// once.

// APIScope is the scope an application asks for when the user's access
// token is to call the Trellis API as that user. A token issued without it
// is for the application alone (its own API, userinfo) and is refused by
// the Trellis API: an application that signs an administrator in does not
// thereby hold the administrator's power over Trellis unless it asked.
const APIScope = "trellis:api"

// providerTokenType is the JOSE "typ" of the provider's JWTs (zitadel/oidc);
// the Signer's own tokens carry "at+jwt".
const providerTokenType = "JWT"

// IsProviderAccessToken reports whether raw looks like a JWT of the OpenID
// provider (typ "JWT") rather than a POST /v1/tokens token (typ "at+jwt").
// It only routes the token: AuthenticateAccessToken decides.
func IsProviderAccessToken(raw string) bool {
	head, _, ok := strings.Cut(raw, ".")
	if !ok || len(head) > 1024 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h struct {
		Typ string `json:"typ"`
	}
	return json.Unmarshal(b, &h) == nil && strings.EqualFold(h.Typ, providerTokenType)
}

// providerAccessClaims are the claims AuthenticateAccessToken reads.
type providerAccessClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience jwt.Audience     `json:"aud"`
	Expiry   *jwt.NumericDate `json:"exp"`
	ID       string           `json:"jti"`
	ClientID string           `json:"client_id"`
}

// AuthenticateAccessToken turns a provider access token into the principal
// it acts as. Every failure wraps trellis.ErrUnauthenticated.
func (s *Service) AuthenticateAccessToken(ctx context.Context, raw string) (directory.Principal, error) {
	fail := func(reason string) (directory.Principal, error) {
		return directory.Principal{}, fmt.Errorf("%w: %s", trellis.ErrUnauthenticated, reason)
	}
	if len(raw) > maxTokenBytes {
		return fail("token too large")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return fail("malformed token")
	}
	var key any
	for _, k := range s.keys.PublicKeys() {
		if k.KeyID == tok.Headers[0].KeyID {
			key = k.Key
		}
	}
	if key == nil {
		return fail("unknown signing key")
	}
	var c providerAccessClaims
	if err := tok.Claims(key, &c); err != nil {
		return fail("invalid signature")
	}
	now := s.cfg.Now()
	switch {
	case c.Issuer != s.cfg.Issuer:
		return fail("wrong issuer")
	case c.Expiry == nil || !now.Before(c.Expiry.Time()):
		return fail("token expired")
	case c.ID == "" || c.Subject == "" || c.ClientID == "":
		return fail("not an access token")
	}
	at, f, ok := (*opStorage)(s.op).accessLive(ctx, c.ID)
	switch {
	case !ok:
		return fail("token revoked or expired")
	case f.Subject != c.Subject || f.ClientID != c.ClientID || !slices.Contains([]string(c.Audience), f.ClientID):
		return fail("token does not match its grant")
	}
	if f.Kind == kindClientCredentials {
		pr, _, err := s.liveAccount(ctx, f, at.Scopes)
		if err != nil {
			return fail("the service account's key is no longer active: " + err.Error())
		}
		return pr, nil
	}
	if !slices.Contains(at.Scopes, APIScope) {
		return fail("the token was not issued for the Trellis API (the application did not ask for scope " + APIScope + ")")
	}
	if _, err := s.liveClaims(ctx, f.Subject, f.Org, f.ClientID); err != nil {
		return fail(err.Error())
	}
	return s.dir.UserPrincipal(ctx, directory.AccessClaims{User: f.Subject, Org: f.Org, Actor: f.Actor, Impersonation: f.Impersonation})
}
