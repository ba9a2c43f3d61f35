package store

import (
	"context"
	"time"
)

// The OpenID provider's sign-in state (federation/provider.go): authorization
// requests with their codes, grants, the access and refresh tokens issued
// under them, and sign-ins waiting for their IdP. It lives here, not in a
// node, so that any node can continue a sign-in another started, refresh a
// token another issued, and see another's revocation, and so that a restart
// loses nothing. Secrets are never stored in clear: a code, a refresh token
// and a pending sign-in's state are kept as their SHA-256 (the provider seals
// what a pending sign-in holds). Every read takes the caller's now and finds
// nothing past a row's ExpiresAt; SweepProviderGrants deletes such rows.

// AuthRequest is an application's authorization request, from /authorize
// until its code is exchanged, and after that (RedeemedAt set) until
// ExpiresAt, so that a code presented again is recognized.
type AuthRequest struct {
	ID       string
	ClientID string
	// State is the request and its sign-in as the provider encodes them;
	// the store keeps it as it is.
	State []byte
	// CodeHash is the SHA-256 of the authorization code issued for it (nil until then).
	CodeHash []byte
	// Version grows by one with every UpdateAuthRequest, which writes only
	// over the version it was given (compare and set).
	Version    int64
	CreatedAt  time.Time
	ExpiresAt  time.Time
	RedeemedAt *time.Time
}

// Grant is one grant family: everything issued from one authorization code
// (or one client-credentials request), through every refresh. Revoking it
// ends all of its tokens at once.
type Grant struct {
	ID       string
	ClientID string
	Subject  string
	Org      string
	// Kind is "" for a sign-in's grant, "client_credentials" for a service
	// account's (ClientID is then its key id).
	Kind         string
	KeyExpiresAt *time.Time // a client-credentials key's expiry (nil: none)
	// Actor and Impersonation mark a grant signed in through an impersonation.
	Actor         string
	Impersonation string
	CreatedAt     time.Time
	RevokedAt     *time.Time
}

// AccessToken is the record of an access token (a JWT) by its id (jti).
type AccessToken struct {
	ID        string
	Grant     string
	Scopes    []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// RefreshToken is a refresh token by the SHA-256 of its value. A rotation
// spends it (UsedAt); a spent token is kept until it expires, so that its
// reuse is recognized.
type RefreshToken struct {
	Hash      []byte
	Grant     string
	Scopes    []string
	AMR       []string
	ACR       string
	AuthTime  time.Time
	IssuedAt  time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// PendingLogin is a sign-in waiting for its IdP's answer, or a connection
// test's ticket, by the SHA-256 of the state (or ticket) that comes back with
// it. Sealed is its content as the provider sealed it (it holds the nonce and
// PKCE verifier of the round trip).
type PendingLogin struct {
	Hash      []byte
	Sealed    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// GrantFilter selects grants: every field set must match; at least one must be set.
type GrantFilter struct {
	ID       string
	ClientID string
	Subject  string
}

// ProviderGrantRows are the OpenID provider's sign-in state.
type ProviderGrantRows interface {
	// InsertAuthRequest stores r (Version as given); an existing id is ErrConflict.
	InsertAuthRequest(ctx context.Context, r AuthRequest) error
	// GetAuthRequest returns request id; ErrNotFound when absent or expired at now.
	GetAuthRequest(ctx context.Context, id string, now time.Time) (AuthRequest, error)
	// AuthRequestByCode returns the request whose code's SHA-256 is codeHash,
	// redeemed or not; ErrNotFound when absent or expired at now.
	AuthRequestByCode(ctx context.Context, codeHash []byte, now time.Time) (AuthRequest, error)
	// UpdateAuthRequest writes r.State and r.CodeHash over request r.ID if
	// its stored Version is still r.Version, and adds one to it; another
	// version is ErrConflict, no request ErrNotFound.
	UpdateAuthRequest(ctx context.Context, r AuthRequest) error
	// CountAuthRequests counts the requests not expired at now.
	CountAuthRequests(ctx context.Context, now time.Time) (int, error)
	// RedeemAuthRequest marks request id's code redeemed at at and keeps the
	// request until keepUntil. Once only: a redeemed request is ErrConflict,
	// an absent or expired one ErrNotFound.
	RedeemAuthRequest(ctx context.Context, id string, at, keepUntil time.Time) error

	// InsertGrant stores g; an existing id is ErrConflict.
	InsertGrant(ctx context.Context, g Grant) error
	// GetGrant returns grant id, revoked or not; ErrNotFound when absent.
	GetGrant(ctx context.Context, id string) (Grant, error)
	// RevokeGrants marks every unrevoked grant f selects revoked at at and
	// returns how many it marked.
	RevokeGrants(ctx context.Context, f GrantFilter, at time.Time) (int, error)

	// InsertAccessToken stores t; an existing id is ErrConflict.
	InsertAccessToken(ctx context.Context, t AccessToken) error
	// GetAccessToken returns access token id; ErrNotFound when absent or expired at now.
	GetAccessToken(ctx context.Context, id string, now time.Time) (AccessToken, error)
	// DeleteAccessToken removes access token id (revoked); ErrNotFound when absent.
	DeleteAccessToken(ctx context.Context, id string) error

	// InsertRefreshToken stores t; an existing hash is ErrConflict.
	InsertRefreshToken(ctx context.Context, t RefreshToken) error
	// GetRefreshToken returns the token whose SHA-256 is hash, spent or
	// not; ErrNotFound when absent or expired at now.
	GetRefreshToken(ctx context.Context, hash []byte, now time.Time) (RefreshToken, error)
	// SpendRefreshToken marks the token spent at at. Once only: a spent
	// token is ErrConflict, an absent or expired one ErrNotFound.
	SpendRefreshToken(ctx context.Context, hash []byte, at time.Time) error

	// InsertPendingLogin stores p; an existing hash is ErrConflict.
	InsertPendingLogin(ctx context.Context, p PendingLogin) error
	// TakePendingLogin deletes and returns the pending login whose state's
	// SHA-256 is hash. Once only: a taken, absent or expired one is ErrNotFound.
	TakePendingLogin(ctx context.Context, hash []byte, now time.Time) (PendingLogin, error)

	// SweepProviderGrants deletes the requests, pending logins and tokens expired at now,
	// and the grants left with no request, code or token; it returns how
	// many rows it deleted.
	SweepProviderGrants(ctx context.Context, now time.Time) (int, error)
}
