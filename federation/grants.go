package federation

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// The provider's sign-in state — authorization requests and their codes,
// grant families, access-token records, refresh tokens, and sign-ins waiting
// for their IdP — lives in the store (store.ProviderGrantRows), not in this process: every node behind a
// load balancer continues a sign-in another node started, refreshes a token
// another issued and sees another's revocation, and a restart loses nothing
// (ADR 0016). Codes and refresh tokens are stored as their SHA-256 only.
// Redeeming a code and spending a refresh token are single conditional
// writes in the store, so each succeeds once across all nodes.

// grantRows is what the provider uses of a store transaction.
type grantRows = store.ProviderGrantRows

// grants is the provider's access to its state in the store.
type grants struct {
	st  store.Store
	now func() time.Time
	// writes counts this node's writes: every sweepEvery-th also sweeps
	// expired rows (any node may; a sweep deletes only what has expired).
	writes atomic.Int64
	// full: the last count found maxInFlight requests in flight; new ones
	// are refused, and counted again, until it drops.
	full atomic.Bool
}

// sweepEvery is how many writes a node makes between two sweeps.
const sweepEvery = 1000

// maxInFlight bounds authorization requests waiting for a sign-in (503 past
// it); a node counts them every countEvery writes, and at every new request
// while the last count found the bound reached.
const (
	maxInFlight = 100_000
	countEvery  = 100
)

func newGrants(st store.Store, now func() time.Time) *grants {
	return &grants{st: st, now: now}
}

// read runs fn over one snapshot of the state.
func (g *grants) read(ctx context.Context, fn func(tx grantRows) error) error {
	return g.st.Read(ctx, func(tx store.Tx) error { return fn(tx) })
}

// write runs fn in one transaction, sweeping expired rows first every sweepEvery writes.
func (g *grants) write(ctx context.Context, fn func(tx grantRows) error) error {
	sweep := g.writes.Add(1)%sweepEvery == 0
	return g.st.InTx(ctx, func(tx store.Tx) error {
		if sweep {
			if _, err := tx.SweepProviderGrants(ctx, g.now()); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// revoke ends every live grant f selects; it returns how many.
func (g *grants) revoke(ctx context.Context, f store.GrantFilter) (int, error) {
	var n int
	err := g.write(ctx, func(tx grantRows) (err error) {
		n, err = tx.RevokeGrants(ctx, f, g.now())
		return err
	})
	return n, err
}

// grant returns family id (revoked or not).
func (g *grants) grant(ctx context.Context, id string) (family, error) {
	var f family
	err := g.read(ctx, func(tx grantRows) error {
		row, err := tx.GetGrant(ctx, id)
		f = familyOf(row)
		return err
	})
	return f, err
}

func tokenHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// ---- authorization requests

// encodeRequest is a's row; a's own fields go in the State the store keeps.
func encodeRequest(a *authRequest, ttl time.Duration) (store.AuthRequest, error) {
	state, err := json.Marshal(a)
	if err != nil {
		return store.AuthRequest{}, fmt.Errorf("federation: encoding an authorization request: %w", err)
	}
	return store.AuthRequest{ID: a.ID, ClientID: a.ClientID, State: state, CodeHash: a.codeHash, Version: a.version,
		CreatedAt: a.CreatedAt, ExpiresAt: a.CreatedAt.Add(ttl)}, nil
}

func decodeRequest(r store.AuthRequest) (*authRequest, error) {
	a := &authRequest{}
	if err := json.Unmarshal(r.State, a); err != nil {
		return nil, fmt.Errorf("federation: stored authorization request %q does not decode: %w", r.ID, err)
	}
	a.ID, a.ClientID, a.CreatedAt, a.codeHash, a.version, a.redeemed = r.ID, r.ClientID, r.CreatedAt, r.CodeHash, r.Version, r.RedeemedAt != nil
	return a, nil
}

// insertRequest stores a new authorization request, unless maxInFlight are in flight.
func (g *grants) insertRequest(ctx context.Context, a *authRequest, ttl time.Duration) error {
	row, err := encodeRequest(a, ttl)
	if err != nil {
		return err
	}
	count := g.full.Load() || g.writes.Load()%countEvery == 0
	return g.write(ctx, func(tx grantRows) error {
		if count {
			n, err := tx.CountAuthRequests(ctx, a.CreatedAt)
			if err != nil {
				return err
			}
			if g.full.Store(n >= maxInFlight); n >= maxInFlight {
				return oidc.ErrServerError().WithDescription("too many sign-ins in flight; try again")
			}
		}
		return tx.InsertAuthRequest(ctx, row)
	})
}

// request returns authorization request id while a sign-in may still use
// it: unexpired, its code not yet redeemed.
func (g *grants) request(ctx context.Context, id string) (*authRequest, bool) {
	var a *authRequest
	err := g.read(ctx, func(tx grantRows) error {
		row, err := tx.GetAuthRequest(ctx, id, g.now())
		if err != nil {
			return err
		}
		a, err = decodeRequest(row)
		return err
	})
	if err != nil || a.redeemed {
		return nil, false
	}
	return a, true
}

// errRequestChanged: the authorization request was completed (or picked)
// meanwhile, here or on another node.
var errRequestChanged = errors.New("authorization request already completed")

// updateRequest reads request id, lets fn change it and writes it back in
// one transaction; the write is refused if the request changed meanwhile
// (errRequestChanged), as is one fn refuses with errRequestChanged.
func (g *grants) updateRequest(ctx context.Context, id string, ttl time.Duration, fn func(a *authRequest) error) (*authRequest, error) {
	var a *authRequest
	err := g.write(ctx, func(tx grantRows) error {
		row, err := tx.GetAuthRequest(ctx, id, g.now())
		if err != nil {
			return err
		}
		if a, err = decodeRequest(row); err != nil {
			return err
		}
		if a.redeemed {
			return errRequestChanged
		}
		if err := fn(a); err != nil {
			return err
		}
		upd, err := encodeRequest(a, ttl)
		if err != nil {
			return err
		}
		return tx.UpdateAuthRequest(ctx, upd)
	})
	if errors.Is(err, trellis.ErrConflict) {
		err = errRequestChanged
	}
	return a, err
}

// ---- grant families

// familyOf is a stored grant as the provider uses it.
func familyOf(g store.Grant) family {
	f := family{ID: g.ID, ClientID: g.ClientID, Subject: g.Subject, Org: g.Org, Kind: g.Kind, Actor: g.Actor,
		Impersonation: g.Impersonation, revoked: g.RevokedAt != nil}
	if g.KeyExpiresAt != nil {
		f.KeyExpires = *g.KeyExpiresAt
	}
	return f
}

// grantOf is the row of a new family created at now.
func grantOf(f family, now time.Time) store.Grant {
	g := store.Grant{ID: f.ID, ClientID: f.ClientID, Subject: f.Subject, Org: f.Org, Kind: f.Kind, Actor: f.Actor,
		Impersonation: f.Impersonation, CreatedAt: now}
	if !f.KeyExpires.IsZero() {
		exp := f.KeyExpires
		g.KeyExpiresAt = &exp
	}
	return g
}

// ---- sign-ins waiting for their IdP (and connection tests' tickets)

// Kinds of pending logins: each hashes its state apart, so a connection
// test's ticket never answers as a sign-in's state.
const (
	pendingSignIn = "signin"
	pendingTest   = "test"
)

func pendingHash(kind, state string) []byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(state))
	return h.Sum(nil)
}

// putPending stores p under state until the login TTL has passed, sealed
// under the key-encryption key (it holds the round trip's nonce and PKCE
// verifier), bound to its row by the hash.
func (s *Service) putPending(ctx context.Context, kind, state string, p *pendingLogin) error {
	plain, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("federation: encoding a pending sign-in: %w", err)
	}
	hash := pendingHash(kind, state)
	row := store.PendingLogin{Hash: hash, Sealed: s.sealer.Seal(plain, hash), CreatedAt: p.CreatedAt, ExpiresAt: p.CreatedAt.Add(s.cfg.LoginTTL)}
	return s.op.grants.write(ctx, func(tx grantRows) error { return tx.InsertPendingLogin(ctx, row) })
}

// takePending removes and returns the pending login of state: a state
// answers once, on whichever node it comes back to.
func (s *Service) takePending(ctx context.Context, kind, state string) (*pendingLogin, bool) {
	var row store.PendingLogin
	err := s.op.grants.write(ctx, func(tx grantRows) (err error) {
		row, err = tx.TakePendingLogin(ctx, pendingHash(kind, state), s.cfg.Now())
		return err
	})
	if err != nil {
		return nil, false
	}
	plain, err := s.sealer.Open(row.Sealed, row.Hash)
	if err != nil {
		return nil, false
	}
	p := &pendingLogin{}
	if json.Unmarshal(plain, p) != nil {
		return nil, false
	}
	return p, true
}
