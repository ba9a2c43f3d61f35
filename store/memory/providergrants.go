package memory

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// grantTables are the OpenID provider's sign-in state (store.ProviderGrantRows).
type grantTables struct {
	authRequests  map[string]store.AuthRequest
	requestByCode map[string]string // hex SHA-256 of the code → request id
	grants        map[string]store.Grant
	accessTokens  map[string]store.AccessToken
	refreshTokens map[string]store.RefreshToken // hex SHA-256 of the token → token
	pendingLogins map[string]store.PendingLogin // hex SHA-256 of the state → pending login
}

func newGrantTables() grantTables {
	return grantTables{
		authRequests:  map[string]store.AuthRequest{},
		requestByCode: map[string]string{},
		grants:        map[string]store.Grant{},
		accessTokens:  map[string]store.AccessToken{},
		refreshTokens: map[string]store.RefreshToken{},
		pendingLogins: map[string]store.PendingLogin{},
	}
}

func cloneAuthRequest(r store.AuthRequest) store.AuthRequest {
	r.State = bytes.Clone(r.State)
	r.CodeHash = bytes.Clone(r.CodeHash)
	r.RedeemedAt = clonePtr(r.RedeemedAt)
	return r
}

func cloneGrant(g store.Grant) store.Grant {
	g.KeyExpiresAt = clonePtr(g.KeyExpiresAt)
	g.RevokedAt = clonePtr(g.RevokedAt)
	return g
}

func cloneAccessToken(a store.AccessToken) store.AccessToken {
	a.Scopes = slices.Clone(a.Scopes)
	return a
}

func cloneRefreshToken(r store.RefreshToken) store.RefreshToken {
	r.Hash = bytes.Clone(r.Hash)
	r.Scopes = slices.Clone(r.Scopes)
	r.AMR = slices.Clone(r.AMR)
	r.UsedAt = clonePtr(r.UsedAt)
	return r
}

// live: a row that expires at exp is still there at now.
func live(exp, now time.Time) bool { return now.Before(exp) }

func (t *tx) InsertAuthRequest(_ context.Context, r store.AuthRequest) error {
	if err := t.writable(); err != nil {
		return err
	}
	if r.CodeHash != nil {
		if _, ok := t.requestByCode[hex.EncodeToString(r.CodeHash)]; ok {
			return conflict("authorization code is taken")
		}
	}
	if err := insertRow(t, t.authRequests, r.ID, cloneAuthRequest(r), "authorization request"); err != nil {
		return err
	}
	if r.CodeHash != nil {
		set(t, t.requestByCode, hex.EncodeToString(r.CodeHash), r.ID)
	}
	return nil
}

func (t *tx) GetAuthRequest(_ context.Context, id string, now time.Time) (store.AuthRequest, error) {
	r, ok := t.authRequests[id]
	if !ok || !live(r.ExpiresAt, now) {
		return store.AuthRequest{}, notFound("authorization request", id)
	}
	return cloneAuthRequest(r), nil
}

func (t *tx) AuthRequestByCode(ctx context.Context, codeHash []byte, now time.Time) (store.AuthRequest, error) {
	id, ok := t.requestByCode[hex.EncodeToString(codeHash)]
	if !ok {
		return store.AuthRequest{}, notFound("authorization code", "")
	}
	return t.GetAuthRequest(ctx, id, now)
}

func (t *tx) UpdateAuthRequest(_ context.Context, r store.AuthRequest) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.authRequests[r.ID]
	switch {
	case !ok:
		return notFound("authorization request", r.ID)
	case old.Version != r.Version:
		return conflict("authorization request %q changed (version %d, not %d)", r.ID, old.Version, r.Version)
	}
	newCode := hex.EncodeToString(r.CodeHash)
	if r.CodeHash != nil && !bytes.Equal(r.CodeHash, old.CodeHash) {
		if _, taken := t.requestByCode[newCode]; taken {
			return conflict("authorization code is taken")
		}
	}
	if old.CodeHash != nil {
		unset(t, t.requestByCode, hex.EncodeToString(old.CodeHash))
	}
	if r.CodeHash != nil {
		set(t, t.requestByCode, newCode, r.ID)
	}
	upd := cloneAuthRequest(old)
	upd.State, upd.CodeHash, upd.Version = bytes.Clone(r.State), bytes.Clone(r.CodeHash), old.Version+1
	set(t, t.authRequests, r.ID, upd)
	return nil
}

func (t *tx) CountAuthRequests(_ context.Context, now time.Time) (int, error) {
	n := 0
	for _, r := range t.authRequests {
		if live(r.ExpiresAt, now) {
			n++
		}
	}
	return n, nil
}

func (t *tx) RedeemAuthRequest(_ context.Context, id string, at, keepUntil time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	r, ok := t.authRequests[id]
	switch {
	case !ok || !live(r.ExpiresAt, at):
		return notFound("authorization request", id)
	case r.RedeemedAt != nil:
		return conflict("authorization code of request %q already redeemed", id)
	}
	r = cloneAuthRequest(r)
	r.RedeemedAt, r.ExpiresAt = &at, keepUntil
	set(t, t.authRequests, id, r)
	return nil
}

func (t *tx) InsertGrant(_ context.Context, g store.Grant) error {
	return insertRow(t, t.grants, g.ID, cloneGrant(g), "grant")
}

func (t *tx) GetGrant(_ context.Context, id string) (store.Grant, error) {
	return getRow(t.grants, id, cloneGrant, "grant")
}

func (t *tx) RevokeGrants(_ context.Context, f store.GrantFilter, at time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	if f == (store.GrantFilter{}) {
		return 0, nil
	}
	n := 0
	for id, g := range t.grants {
		if g.RevokedAt != nil || (f.ID != "" && g.ID != f.ID) || (f.ClientID != "" && g.ClientID != f.ClientID) ||
			(f.Subject != "" && g.Subject != f.Subject) {
			continue
		}
		g = cloneGrant(g)
		g.RevokedAt = &at
		set(t, t.grants, id, g)
		n++
	}
	return n, nil
}

func (t *tx) InsertAccessToken(_ context.Context, a store.AccessToken) error {
	return insertRow(t, t.accessTokens, a.ID, cloneAccessToken(a), "access token")
}

func (t *tx) GetAccessToken(_ context.Context, id string, now time.Time) (store.AccessToken, error) {
	a, ok := t.accessTokens[id]
	if !ok || !live(a.ExpiresAt, now) {
		return store.AccessToken{}, notFound("access token", id)
	}
	return cloneAccessToken(a), nil
}

func (t *tx) DeleteAccessToken(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.accessTokens[id]; !ok {
		return notFound("access token", id)
	}
	unset(t, t.accessTokens, id)
	return nil
}

func (t *tx) InsertRefreshToken(_ context.Context, r store.RefreshToken) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := hex.EncodeToString(r.Hash)
	if _, ok := t.refreshTokens[key]; ok {
		return conflict("refresh token is taken")
	}
	set(t, t.refreshTokens, key, cloneRefreshToken(r))
	return nil
}

func (t *tx) GetRefreshToken(_ context.Context, hash []byte, now time.Time) (store.RefreshToken, error) {
	r, ok := t.refreshTokens[hex.EncodeToString(hash)]
	if !ok || !live(r.ExpiresAt, now) {
		return store.RefreshToken{}, notFound("refresh token", "")
	}
	return cloneRefreshToken(r), nil
}

func (t *tx) SpendRefreshToken(_ context.Context, hash []byte, at time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := hex.EncodeToString(hash)
	r, ok := t.refreshTokens[key]
	switch {
	case !ok || !live(r.ExpiresAt, at):
		return notFound("refresh token", "")
	case r.UsedAt != nil:
		return conflict("refresh token already spent")
	}
	r = cloneRefreshToken(r)
	r.UsedAt = &at
	set(t, t.refreshTokens, key, r)
	return nil
}

func (t *tx) InsertPendingLogin(_ context.Context, p store.PendingLogin) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := hex.EncodeToString(p.Hash)
	if _, ok := t.pendingLogins[key]; ok {
		return conflict("pending login is taken")
	}
	p.Hash, p.Sealed = bytes.Clone(p.Hash), bytes.Clone(p.Sealed)
	set(t, t.pendingLogins, key, p)
	return nil
}

func (t *tx) TakePendingLogin(_ context.Context, hash []byte, now time.Time) (store.PendingLogin, error) {
	if err := t.writable(); err != nil {
		return store.PendingLogin{}, err
	}
	key := hex.EncodeToString(hash)
	p, ok := t.pendingLogins[key]
	if !ok || !live(p.ExpiresAt, now) {
		return store.PendingLogin{}, notFound("pending login", "")
	}
	unset(t, t.pendingLogins, key)
	p.Hash, p.Sealed = bytes.Clone(p.Hash), bytes.Clone(p.Sealed)
	return p, nil
}

func (t *tx) SweepProviderGrants(_ context.Context, now time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	n := 0
	for key, p := range t.pendingLogins {
		if !live(p.ExpiresAt, now) {
			unset(t, t.pendingLogins, key)
			n++
		}
	}
	held := map[string]bool{} // grants something still refers to
	for id, r := range t.authRequests {
		if live(r.ExpiresAt, now) {
			held[id] = true
			continue
		}
		if r.CodeHash != nil {
			unset(t, t.requestByCode, hex.EncodeToString(r.CodeHash))
		}
		unset(t, t.authRequests, id)
		n++
	}
	for id, a := range t.accessTokens {
		if live(a.ExpiresAt, now) {
			held[a.Grant] = true
			continue
		}
		unset(t, t.accessTokens, id)
		n++
	}
	for key, r := range t.refreshTokens {
		if live(r.ExpiresAt, now) {
			held[r.Grant] = true
			continue
		}
		unset(t, t.refreshTokens, key)
		n++
	}
	for id := range t.grants {
		if !held[id] {
			unset(t, t.grants, id)
			n++
		}
	}
	return n, nil
}
