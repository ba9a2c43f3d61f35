package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// storedAuthority rebuilds the principal a deferred grant is weighed against
// when it takes effect (an invitation accepted, an SSO sign-in): actor, an
// audit actor string, limited as the API key keyID is limited now. The key's
// organization scope and permission list apply as they did when the grant was
// made; a key revoked, expired or deleted since — or its service account —
// leaves no authority at all (ErrForbidden naming what). keyID is the KeyID
// of the principal that made the grant (an API key, a provider API key or a
// SCIM token), limit the permission list it acted with (a client-credentials
// token's scope may be narrower than its key's): the authority is limited by
// both. An empty keyID is a user's token or the admin key, with no limit
// beyond the graph's; a service account without one made the grant before
// keys were recorded, and is refused.
func (s *Service) storedAuthority(ctx context.Context, tx store.Tx, actor, keyID string, limit []string, what string) (Principal, error) {
	p := principalOf(actor)
	if keyID == "" && p.Kind == KindProvider && strings.HasPrefix(p.ID, "pk_") {
		keyID = p.ID // a provider API key acts under its own id
	}
	if keyID == "" {
		if p.Kind == KindServiceAccount {
			// a service account acts only with a key: this grant was made
			// before its key was recorded, so its limit is unknown
			return Principal{}, fmt.Errorf("%w: %s was made by %s before its API key was recorded: it grants nothing now; make it again", trellis.ErrForbidden, what, actor)
		}
		return p, nil
	}
	gone := fmt.Errorf("%w: the API key %s was made with is revoked, expired or deleted: it grants nothing now", trellis.ErrForbidden, what)
	switch {
	case strings.HasPrefix(keyID, "sct_"): // a SCIM token, acting for its creator
		k, err := tx.GetSCIMToken(ctx, keyID)
		if errors.Is(err, trellis.ErrNotFound) {
			return Principal{}, gone
		} else if err != nil {
			return Principal{}, err
		}
		if k.CreatedBy != actor || s.scimTokenView(k).Status != "active" {
			return Principal{}, gone
		}
		p.Org, p.Permissions, p.KeyID = k.Org, slices.Clone(k.Permissions), k.ID
		if p.Kind == KindProvider {
			p.Org = ""
		}
	case p.Kind == KindServiceAccount:
		k, err := tx.GetAPIKey(ctx, keyID)
		if errors.Is(err, trellis.ErrNotFound) {
			return Principal{}, gone
		} else if err != nil {
			return Principal{}, err
		}
		if k.ServiceAccount != p.ID || s.keyView(k).Status != "active" {
			return Principal{}, gone
		}
		if _, err := tx.GetServiceAccount(ctx, k.ServiceAccount); errors.Is(err, trellis.ErrNotFound) {
			return Principal{}, gone
		} else if err != nil {
			return Principal{}, err
		}
		p.Org, p.Permissions, p.KeyID = k.Org, slices.Clone(k.Permissions), k.ID
	case p.Kind == KindProvider:
		k, err := tx.GetProviderKey(ctx, keyID)
		if errors.Is(err, trellis.ErrNotFound) {
			return Principal{}, gone
		} else if err != nil {
			return Principal{}, err
		}
		if s.providerKeyView(k).Status != "active" {
			return Principal{}, gone
		}
		p.KeyID = k.ID
	default:
		// only service accounts and the provider hold keys; anything else
		// recorded with one is not an authority this code made
		return Principal{}, fmt.Errorf("%w: %s was made by %s with key %s, which is not an authority", trellis.ErrForbidden, what, actor, keyID)
	}
	p.Permissions = intersectLimits(p.Permissions, limit)
	return p, nil
}

// intersectLimits is the permission list allowing what both a and b allow
// (keyAllows; nil allows everything). Where the two lists name different
// permissions it keeps only those both allow, so it never allows more than
// either: a token narrowed from its key stays narrowed.
func intersectLimits(a, b []string) []string {
	switch {
	case a == nil:
		return slices.Clone(b)
	case b == nil:
		return slices.Clone(a)
	}
	out := []string{}
	for _, perm := range append(slices.Clone(a), b...) {
		if keyAllows(a, perm) && keyAllows(b, perm) && !slices.Contains(out, perm) {
			out = append(out, perm)
		}
	}
	return out
}

// CheckRoleGrant refuses (403, naming field) roles that p could not grant on
// org: an SSO connection's role mapping is its configurer's grant, so it is
// weighed when saved as well as at each sign-in. Membership itself (access)
// is weighed at sign-in only, where JIT creates it; a role unknown here (one a
// sub-organization sharing the connection defines) is left to sign-in too.
func (s *Service) CheckRoleGrant(ctx context.Context, tx store.Tx, p Principal, org store.Org, roles []string, field string) error {
	if p.Kind == KindProvider {
		return nil
	}
	for _, key := range roles {
		rs, err := s.resolveRoles(ctx, tx, org, []string{key}, field)
		var invalid *trellis.ValidationError
		if errors.As(err, &invalid) {
			continue
		} else if err != nil {
			return err
		}
		perms := slices.DeleteFunc(permissionsOf(rs), func(perm string) bool { return perm == permAccess })
		if err := s.noEscalation(ctx, tx, p, org, perms, field); err != nil {
			return err
		}
	}
	return nil
}
