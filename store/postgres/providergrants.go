package postgres

import (
	"context"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// The OpenID provider's sign-in state (store.ProviderGrantRows). Redeeming a
// code and spending a refresh token are single conditional UPDATEs, so that
// each succeeds once even between transactions that do not hold the write
// lock exclusively.

const authRequestSelect = `SELECT id, client_id, state, code_hash, version, created_at, expires_at, redeemed_at FROM oauth_auth_requests `

func scanAuthRequest(r scanner) (store.AuthRequest, error) {
	var a store.AuthRequest
	err := r.Scan(&a.ID, &a.ClientID, &a.State, &a.CodeHash, &a.Version, &a.CreatedAt, &a.ExpiresAt, &a.RedeemedAt)
	return a, err
}

func (t *tx) InsertAuthRequest(ctx context.Context, r store.AuthRequest) error {
	if r.State == nil {
		r.State = []byte{}
	}
	_, err := t.exec(ctx, "insert authorization request",
		`INSERT INTO oauth_auth_requests (id, client_id, state, code_hash, version, created_at, expires_at, redeemed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		validUTF8(r.ID), validUTF8(r.ClientID), r.State, r.CodeHash, r.Version, r.CreatedAt, r.ExpiresAt, r.RedeemedAt)
	return err
}

func (t *tx) GetAuthRequest(ctx context.Context, id string, now time.Time) (store.AuthRequest, error) {
	return one(ctx, t, "get authorization request", func() error { return notFound("authorization request", id) },
		scanAuthRequest, authRequestSelect+`WHERE id = $1 AND expires_at > $2`, validUTF8(id), now)
}

func (t *tx) AuthRequestByCode(ctx context.Context, codeHash []byte, now time.Time) (store.AuthRequest, error) {
	return one(ctx, t, "get authorization request by code", func() error { return notFound("authorization code", "") },
		scanAuthRequest, authRequestSelect+`WHERE code_hash = $1 AND expires_at > $2`, codeHash, now)
}

func (t *tx) UpdateAuthRequest(ctx context.Context, r store.AuthRequest) error {
	if r.State == nil {
		r.State = []byte{}
	}
	n, err := t.exec(ctx, "write authorization request",
		`UPDATE oauth_auth_requests SET state = $3, code_hash = $4, version = version + 1 WHERE id = $1 AND version = $2`,
		validUTF8(r.ID), r.Version, r.State, r.CodeHash)
	if err != nil || n == 1 {
		return err
	}
	return t.missingOrChanged(ctx, "authorization request", r.ID,
		`SELECT count(*) FROM oauth_auth_requests WHERE id = $1`, validUTF8(r.ID))
}

// missingOrChanged explains a conditional write that touched no row: the row
// is gone (ErrNotFound) or no longer what the write expected (ErrConflict).
func (t *tx) missingOrChanged(ctx context.Context, what, key, sql string, args ...any) error {
	n, err := one(ctx, t, "read "+what, func() error { return nil }, func(r scanner) (int, error) {
		var n int
		return n, r.Scan(&n)
	}, sql, args...)
	switch {
	case err != nil:
		return err
	case n == 0:
		return notFound(what, key)
	}
	return conflict("%s %q changed or was already used", what, key)
}

func (t *tx) CountAuthRequests(ctx context.Context, now time.Time) (int, error) {
	return one(ctx, t, "count authorization requests", func() error { return nil }, func(r scanner) (int, error) {
		var n int
		return n, r.Scan(&n)
	}, `SELECT count(*) FROM oauth_auth_requests WHERE expires_at > $1`, now)
}

func (t *tx) RedeemAuthRequest(ctx context.Context, id string, at, keepUntil time.Time) error {
	n, err := t.exec(ctx, "redeem authorization code",
		`UPDATE oauth_auth_requests SET redeemed_at = $2, expires_at = $3
		WHERE id = $1 AND redeemed_at IS NULL AND expires_at > $2`, validUTF8(id), at, keepUntil)
	if err != nil || n == 1 {
		return err
	}
	return t.missingOrChanged(ctx, "authorization request", id,
		`SELECT count(*) FROM oauth_auth_requests WHERE id = $1 AND expires_at > $2`, validUTF8(id), at)
}

const grantSelect = `SELECT id, client_id, subject, org, kind, key_expires_at, actor, impersonation, created_at, revoked_at FROM oauth_grants `

func (t *tx) InsertGrant(ctx context.Context, g store.Grant) error {
	_, err := t.exec(ctx, "insert grant",
		`INSERT INTO oauth_grants (id, client_id, subject, org, kind, key_expires_at, actor, impersonation, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		validUTF8(g.ID), validUTF8(g.ClientID), validUTF8(g.Subject), validUTF8(g.Org), validUTF8(g.Kind), g.KeyExpiresAt,
		validUTF8(g.Actor), validUTF8(g.Impersonation), g.CreatedAt, g.RevokedAt)
	return err
}

func (t *tx) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return one(ctx, t, "get grant", func() error { return notFound("grant", id) }, func(r scanner) (store.Grant, error) {
		var g store.Grant
		err := r.Scan(&g.ID, &g.ClientID, &g.Subject, &g.Org, &g.Kind, &g.KeyExpiresAt, &g.Actor, &g.Impersonation,
			&g.CreatedAt, &g.RevokedAt)
		return g, err
	}, grantSelect+`WHERE id = $1`, validUTF8(id))
}

func (t *tx) RevokeGrants(ctx context.Context, f store.GrantFilter, at time.Time) (int, error) {
	if f == (store.GrantFilter{}) {
		return 0, nil
	}
	n, err := t.exec(ctx, "revoke grants",
		`UPDATE oauth_grants SET revoked_at = $4 WHERE revoked_at IS NULL
			AND ($1 = '' OR id = $1) AND ($2 = '' OR client_id = $2) AND ($3 = '' OR subject = $3)`,
		validUTF8(f.ID), validUTF8(f.ClientID), validUTF8(f.Subject), at)
	return int(n), err
}

func (t *tx) InsertAccessToken(ctx context.Context, a store.AccessToken) error {
	if a.Scopes == nil {
		a.Scopes = []string{}
	}
	_, err := t.exec(ctx, "insert access token",
		`INSERT INTO oauth_access_tokens (id, grant_id, scopes, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		validUTF8(a.ID), validUTF8(a.Grant), a.Scopes, a.IssuedAt, a.ExpiresAt)
	return err
}

func (t *tx) GetAccessToken(ctx context.Context, id string, now time.Time) (store.AccessToken, error) {
	return one(ctx, t, "get access token", func() error { return notFound("access token", id) }, func(r scanner) (store.AccessToken, error) {
		var a store.AccessToken
		return a, r.Scan(&a.ID, &a.Grant, &a.Scopes, &a.IssuedAt, &a.ExpiresAt)
	}, `SELECT id, grant_id, scopes, issued_at, expires_at FROM oauth_access_tokens WHERE id = $1 AND expires_at > $2`, validUTF8(id), now)
}

func (t *tx) DeleteAccessToken(ctx context.Context, id string) error {
	n, err := t.exec(ctx, "delete access token", `DELETE FROM oauth_access_tokens WHERE id = $1`, validUTF8(id))
	if err == nil && n == 0 {
		err = notFound("access token", id)
	}
	return err
}

func (t *tx) InsertRefreshToken(ctx context.Context, r store.RefreshToken) error {
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	if r.AMR == nil {
		r.AMR = []string{}
	}
	_, err := t.exec(ctx, "insert refresh token",
		`INSERT INTO oauth_refresh_tokens (hash, grant_id, scopes, amr, acr, auth_time, issued_at, expires_at, used_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.Hash, validUTF8(r.Grant), r.Scopes, r.AMR, validUTF8(r.ACR), r.AuthTime, r.IssuedAt, r.ExpiresAt, r.UsedAt)
	return err
}

func (t *tx) GetRefreshToken(ctx context.Context, hash []byte, now time.Time) (store.RefreshToken, error) {
	return one(ctx, t, "get refresh token", func() error { return notFound("refresh token", "") }, func(r scanner) (store.RefreshToken, error) {
		var rt store.RefreshToken
		return rt, r.Scan(&rt.Hash, &rt.Grant, &rt.Scopes, &rt.AMR, &rt.ACR, &rt.AuthTime, &rt.IssuedAt, &rt.ExpiresAt, &rt.UsedAt)
	}, `SELECT hash, grant_id, scopes, amr, acr, auth_time, issued_at, expires_at, used_at FROM oauth_refresh_tokens
		WHERE hash = $1 AND expires_at > $2`, hash, now)
}

func (t *tx) SpendRefreshToken(ctx context.Context, hash []byte, at time.Time) error {
	n, err := t.exec(ctx, "spend refresh token",
		`UPDATE oauth_refresh_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`, hash, at)
	if err != nil || n == 1 {
		return err
	}
	return t.missingOrChanged(ctx, "refresh token", "",
		`SELECT count(*) FROM oauth_refresh_tokens WHERE hash = $1 AND expires_at > $2`, hash, at)
}

func (t *tx) InsertPendingLogin(ctx context.Context, p store.PendingLogin) error {
	_, err := t.exec(ctx, "insert pending login",
		`INSERT INTO oauth_pending_logins (hash, sealed, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		p.Hash, p.Sealed, p.CreatedAt, p.ExpiresAt)
	return err
}

func (t *tx) TakePendingLogin(ctx context.Context, hash []byte, now time.Time) (store.PendingLogin, error) {
	if err := t.usable("take pending login", true); err != nil {
		return store.PendingLogin{}, err
	}
	return one(ctx, t, "take pending login", func() error { return notFound("pending login", "") }, func(r scanner) (store.PendingLogin, error) {
		var p store.PendingLogin
		return p, r.Scan(&p.Hash, &p.Sealed, &p.CreatedAt, &p.ExpiresAt)
	}, `DELETE FROM oauth_pending_logins WHERE hash = $1 AND expires_at > $2 RETURNING hash, sealed, created_at, expires_at`, hash, now)
}

func (t *tx) SweepProviderGrants(ctx context.Context, now time.Time) (int, error) {
	var total int64
	for _, table := range []string{"oauth_pending_logins", "oauth_auth_requests", "oauth_access_tokens", "oauth_refresh_tokens"} {
		n, err := t.exec(ctx, "sweep "+table, `DELETE FROM `+table+` WHERE expires_at <= $1`, now)
		if err != nil {
			return 0, err
		}
		total += n
	}
	n, err := t.exec(ctx, "sweep oauth_grants",
		`DELETE FROM oauth_grants g WHERE NOT EXISTS (SELECT FROM oauth_auth_requests r WHERE r.id = g.id)
			AND NOT EXISTS (SELECT FROM oauth_access_tokens a WHERE a.grant_id = g.id)
			AND NOT EXISTS (SELECT FROM oauth_refresh_tokens t WHERE t.grant_id = g.id)`)
	if err != nil {
		return 0, err
	}
	return int(total + n), nil
}
