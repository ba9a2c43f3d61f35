package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/trellis-iam/trellis"
)

// KeyCredential is the credential "trk.<key id>.<secret>" a service account
// presents as OAuth 2.0 client credentials (RFC 6749 §4.4): client_id is the
// key id, client_secret the whole key or its secret part. It is the same
// credential, checked the same way (AuthenticateKey: SHA-256 digest compared
// in constant time, active key of an existing account).
func KeyCredential(clientID, secret string) string {
	if IsAPIKey(secret) {
		return secret
	}
	return apiKeyPrefix + clientID + "." + secret
}

// LiveKey is the principal of API key id while it is active (not revoked,
// not expired) and its service account exists — what a token minted from the
// key may still do — and when the key expires (zero: never). Every failure
// is the same ErrUnauthenticated.
func (s *Service) LiveKey(ctx context.Context, id string) (Principal, time.Time, error) {
	k, err := s.keyOfLiveAccount(ctx, id)
	if errors.Is(err, trellis.ErrNotFound) || err == nil && s.keyView(k).Status != "active" {
		return Principal{}, time.Time{}, fmt.Errorf("%w: the API key is revoked, expired or deleted", trellis.ErrUnauthenticated)
	} else if err != nil {
		return Principal{}, time.Time{}, err
	}
	var exp time.Time
	if k.ExpiresAt != nil {
		exp = *k.ExpiresAt
	}
	return Principal{Kind: KindServiceAccount, ID: k.ServiceAccount, Org: k.Org, Permissions: slices.Clone(k.Permissions), KeyID: k.ID}, exp, nil
}
