package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// The OpenID provider's sign-in state (store.ProviderGrantRows).

func authRequestRow(id string) store.AuthRequest {
	return store.AuthRequest{ID: id, ClientID: "app_crm", State: []byte(`{"scopes":["openid"]}`), CreatedAt: at(0), ExpiresAt: at(10)}
}

func getAuthRequest(t *testing.T, s store.Store, id string, now time.Time) (store.AuthRequest, error) {
	var r store.AuthRequest
	err := s.Read(t.Context(), func(tx store.Tx) (err error) {
		r, err = tx.GetAuthRequest(t.Context(), id, now)
		return err
	})
	return r, err
}

func authRequestByCode(t *testing.T, s store.Store, code string, now time.Time) (store.AuthRequest, error) {
	var r store.AuthRequest
	err := s.Read(t.Context(), func(tx store.Tx) (err error) {
		r, err = tx.AuthRequestByCode(t.Context(), sha(code), now)
		return err
	})
	return r, err
}

func redeem(t *testing.T, s store.Store, id string, when, keep time.Time) error {
	return s.InTx(t.Context(), func(tx store.Tx) error { return tx.RedeemAuthRequest(t.Context(), id, when, keep) })
}

func testAuthRequests(t *testing.T, s store.Store) {
	a, b := authRequestRow("ar_a1"), authRequestRow("ar_b2")
	b.ExpiresAt = at(5)
	do(t, s, store.Tx.InsertAuthRequest, a)
	do(t, s, store.Tx.InsertAuthRequest, b)
	wantErr(t, "InsertAuthRequest duplicate id", exec(t, s, store.Tx.InsertAuthRequest, authRequestRow("ar_a1")), trellis.ErrConflict)

	got, err := getAuthRequest(t, s, "ar_a1", at(1))
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetAuthRequest", got, a)
	_, err = getAuthRequest(t, s, "ar_b2", at(5))
	wantErr(t, "GetAuthRequest at its expiry", err, trellis.ErrNotFound)
	_, err = getAuthRequest(t, s, "ar_zz", at(1))
	wantErr(t, "GetAuthRequest unknown", err, trellis.ErrNotFound)
	mustRead(t, s, func(tx store.Tx) error {
		n, err := tx.CountAuthRequests(t.Context(), at(4))
		same(t, "CountAuthRequests before b2 expires", n, 2)
		if err == nil {
			n, err = tx.CountAuthRequests(t.Context(), at(6))
			same(t, "CountAuthRequests after b2 expired", n, 1)
		}
		return err
	})

	// a sign-in completes it and a code is issued: compare and set on Version
	_, err = authRequestByCode(t, s, "code-1", at(1))
	wantErr(t, "AuthRequestByCode before a code", err, trellis.ErrNotFound)
	upd := a
	upd.State, upd.CodeHash = []byte(`{"done":true}`), sha("code-1")
	do(t, s, store.Tx.UpdateAuthRequest, upd)
	upd.Version++
	got, err = authRequestByCode(t, s, "code-1", at(1))
	if err != nil {
		t.Fatal(err)
	}
	same(t, "AuthRequestByCode", got, upd)
	stale := a // the version before the update
	stale.State = []byte(`{"done":false}`)
	wantErr(t, "UpdateAuthRequest over a newer version", exec(t, s, store.Tx.UpdateAuthRequest, stale), trellis.ErrConflict)
	wantErr(t, "UpdateAuthRequest unknown", exec(t, s, store.Tx.UpdateAuthRequest, authRequestRow("ar_zz")), trellis.ErrNotFound)
	other := b
	other.CodeHash = sha("code-1")
	wantErr(t, "UpdateAuthRequest with another request's code", exec(t, s, store.Tx.UpdateAuthRequest, other), trellis.ErrConflict)
	_, err = authRequestByCode(t, s, "code-2", at(1))
	wantErr(t, "AuthRequestByCode unknown code", err, trellis.ErrNotFound)

	// the code is redeemed once; the request stays readable until keepUntil
	if err := redeem(t, s, "ar_a1", at(2), at(12)); err != nil {
		t.Fatalf("RedeemAuthRequest: %v", err)
	}
	wantErr(t, "RedeemAuthRequest again", redeem(t, s, "ar_a1", at(3), at(13)), trellis.ErrConflict)
	wantErr(t, "RedeemAuthRequest expired", redeem(t, s, "ar_b2", at(6), at(16)), trellis.ErrNotFound)
	wantErr(t, "RedeemAuthRequest unknown", redeem(t, s, "ar_zz", at(1), at(16)), trellis.ErrNotFound)
	got, err = authRequestByCode(t, s, "code-1", at(11))
	if err != nil {
		t.Fatalf("a redeemed code past the request's first expiry, before keepUntil: %v", err)
	}
	upd.RedeemedAt, upd.ExpiresAt = ptr(at(2)), at(12)
	same(t, "AuthRequestByCode redeemed", got, upd)
	_, err = authRequestByCode(t, s, "code-1", at(12))
	wantErr(t, "AuthRequestByCode past keepUntil", err, trellis.ErrNotFound)
}

func grantRow(id, client, subject string) store.Grant {
	return store.Grant{ID: id, ClientID: client, Subject: subject, Org: "org_a1", CreatedAt: at(0)}
}

func revoke(t *testing.T, s store.Store, f store.GrantFilter, when time.Time) int {
	t.Helper()
	var n int
	mustTx(t, s, func(tx store.Tx) (err error) {
		n, err = tx.RevokeGrants(t.Context(), f, when)
		return err
	})
	return n
}

func testGrants(t *testing.T, s store.Store) {
	g1, g2, g3 := grantRow("ar_a1", "app_crm", "usr_a"), grantRow("ar_b2", "app_crm", "usr_b"), grantRow("ar_c3", "app_wiki", "usr_a")
	cc := grantRow("cc_d4", "key_1", "service_account:sa_1")
	cc.Kind, cc.KeyExpiresAt = "client_credentials", ptr(at(60))
	g3.Actor, g3.Impersonation = "usr_staff", "imp_1"
	for _, g := range []store.Grant{g1, g2, g3, cc} {
		do(t, s, store.Tx.InsertGrant, g)
	}
	wantErr(t, "InsertGrant duplicate", exec(t, s, store.Tx.InsertGrant, grantRow("ar_a1", "x", "y")), trellis.ErrConflict)
	same(t, "GetGrant", get(t, s, store.Tx.GetGrant, "ar_c3"), g3)
	same(t, "GetGrant client credentials", get(t, s, store.Tx.GetGrant, "cc_d4"), cc)
	_, err := call(t, s, store.Tx.GetGrant, "ar_zz")
	wantErr(t, "GetGrant unknown", err, trellis.ErrNotFound)

	same(t, "RevokeGrants with no filter", revoke(t, s, store.GrantFilter{}, at(1)), 0)
	same(t, "RevokeGrants of a user at a client", revoke(t, s, store.GrantFilter{ClientID: "app_crm", Subject: "usr_a"}, at(1)), 1)
	g1.RevokedAt = ptr(at(1))
	same(t, "GetGrant revoked", get(t, s, store.Tx.GetGrant, "ar_a1"), g1)
	same(t, "RevokeGrants of a client counts only live grants", revoke(t, s, store.GrantFilter{ClientID: "app_crm"}, at(2)), 1)
	g2.RevokedAt = ptr(at(2))
	same(t, "GetGrant revoked with its client", get(t, s, store.Tx.GetGrant, "ar_b2"), g2)
	same(t, "GetGrant revoked keeps its first revocation", get(t, s, store.Tx.GetGrant, "ar_a1"), g1)
	same(t, "RevokeGrants by id", revoke(t, s, store.GrantFilter{ID: "cc_d4"}, at(3)), 1)
	same(t, "GetGrant of another client untouched", get(t, s, store.Tx.GetGrant, "ar_c3"), g3)
}

func getRefresh(t *testing.T, s store.Store, secret string, now time.Time) (store.RefreshToken, error) {
	var r store.RefreshToken
	err := s.Read(t.Context(), func(tx store.Tx) (err error) {
		r, err = tx.GetRefreshToken(t.Context(), sha(secret), now)
		return err
	})
	return r, err
}

func spend(s store.Store, ctx context.Context, secret string, when time.Time) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.SpendRefreshToken(ctx, sha(secret), when) })
}

func testProviderTokens(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertGrant, grantRow("ar_a1", "app_crm", "usr_a"))
	a := store.AccessToken{ID: "at_1", Grant: "ar_a1", Scopes: []string{"openid", "email"}, IssuedAt: at(0), ExpiresAt: at(15)}
	do(t, s, store.Tx.InsertAccessToken, a)
	wantErr(t, "InsertAccessToken duplicate", exec(t, s, store.Tx.InsertAccessToken, a), trellis.ErrConflict)
	var got store.AccessToken
	mustRead(t, s, func(tx store.Tx) (err error) {
		got, err = tx.GetAccessToken(t.Context(), "at_1", at(14))
		return err
	})
	same(t, "GetAccessToken", got, a)
	err := s.Read(t.Context(), func(tx store.Tx) error {
		_, err := tx.GetAccessToken(t.Context(), "at_1", at(15))
		return err
	})
	wantErr(t, "GetAccessToken at its expiry", err, trellis.ErrNotFound)
	do(t, s, store.Tx.DeleteAccessToken, "at_1")
	wantErr(t, "DeleteAccessToken again", exec(t, s, store.Tx.DeleteAccessToken, "at_1"), trellis.ErrNotFound)

	r := store.RefreshToken{Hash: sha("rt-1"), Grant: "ar_a1", Scopes: []string{"openid", "offline_access"}, AMR: []string{"pwd", "mfa"},
		ACR: "phr", AuthTime: at(0), IssuedAt: at(0), ExpiresAt: at(60)}
	do(t, s, store.Tx.InsertRefreshToken, r)
	wantErr(t, "InsertRefreshToken duplicate", exec(t, s, store.Tx.InsertRefreshToken, r), trellis.ErrConflict)
	gotR, err := getRefresh(t, s, "rt-1", at(1))
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetRefreshToken", gotR, r)
	_, err = getRefresh(t, s, "rt-2", at(1))
	wantErr(t, "GetRefreshToken unknown", err, trellis.ErrNotFound)

	if err := spend(s, t.Context(), "rt-1", at(2)); err != nil {
		t.Fatalf("SpendRefreshToken: %v", err)
	}
	wantErr(t, "SpendRefreshToken twice", spend(s, t.Context(), "rt-1", at(3)), trellis.ErrConflict)
	r.UsedAt = ptr(at(2))
	gotR, err = getRefresh(t, s, "rt-1", at(3))
	if err != nil {
		t.Fatalf("a spent refresh token must stay readable (reuse detection): %v", err)
	}
	same(t, "GetRefreshToken spent", gotR, r)
	_, err = getRefresh(t, s, "rt-1", at(60))
	wantErr(t, "GetRefreshToken at its expiry", err, trellis.ErrNotFound)
	wantErr(t, "SpendRefreshToken unknown", spend(s, t.Context(), "rt-2", at(3)), trellis.ErrNotFound)
	r2 := r
	r2.Hash, r2.UsedAt, r2.ExpiresAt = sha("rt-2"), nil, at(5)
	do(t, s, store.Tx.InsertRefreshToken, r2)
	wantErr(t, "SpendRefreshToken expired", spend(s, t.Context(), "rt-2", at(5)), trellis.ErrNotFound)
}

// testProviderSpendOnce: a refresh token spent through two stores at once
// is spent once; so is a code redeemed at once.
func testProviderSpendOnce(t *testing.T, stores []store.Store) {
	s := stores[0]
	do(t, s, store.Tx.InsertGrant, grantRow("ar_a1", "app_crm", "usr_a"))
	do(t, s, store.Tx.InsertAuthRequest, authRequestRow("ar_a1"))
	do(t, s, store.Tx.InsertRefreshToken, store.RefreshToken{Hash: sha("rt-1"), Grant: "ar_a1", AuthTime: at(0), IssuedAt: at(0), ExpiresAt: at(60)})
	const tries = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]int{}
	for i := range tries {
		wg.Go(func() {
			err1 := spend(stores[i%len(stores)], t.Context(), "rt-1", at(1))
			err2 := redeem(t, stores[i%len(stores)], "ar_a1", at(1), at(11))
			mu.Lock()
			defer mu.Unlock()
			for what, err := range map[string]error{"spend": err1, "redeem": err2} {
				switch {
				case err == nil:
					won[what]++
				case !errors.Is(err, trellis.ErrConflict):
					t.Errorf("%s at once: %v, want nil or ErrConflict", what, err)
				}
			}
		})
	}
	wg.Wait()
	same(t, "one spend and one redemption succeeded", won, map[string]int{"spend": 1, "redeem": 1})
}

func testProviderSweep(t *testing.T, s store.Store) {
	// ar_a1: its request expires at 10, its access token at 15, its refresh token at 60
	// ar_b2: its request expires at 5 and nothing was issued
	// cc_c3: an access token expiring at 15 only
	a, b := authRequestRow("ar_a1"), authRequestRow("ar_b2")
	b.ExpiresAt = at(5)
	do(t, s, store.Tx.InsertAuthRequest, a)
	do(t, s, store.Tx.InsertAuthRequest, b)
	for _, g := range []store.Grant{grantRow("ar_a1", "app_crm", "usr_a"), grantRow("ar_b2", "app_crm", "usr_b"), grantRow("cc_c3", "key_1", "service_account:sa_1")} {
		do(t, s, store.Tx.InsertGrant, g)
	}
	do(t, s, store.Tx.InsertAccessToken, store.AccessToken{ID: "at_1", Grant: "ar_a1", IssuedAt: at(0), ExpiresAt: at(15)})
	do(t, s, store.Tx.InsertAccessToken, store.AccessToken{ID: "at_2", Grant: "cc_c3", IssuedAt: at(0), ExpiresAt: at(15)})
	do(t, s, store.Tx.InsertRefreshToken, store.RefreshToken{Hash: sha("rt-1"), Grant: "ar_a1", AuthTime: at(0), IssuedAt: at(0), ExpiresAt: at(60)})

	sweep := func(now time.Time) int {
		var n int
		mustTx(t, s, func(tx store.Tx) (err error) {
			n, err = tx.SweepProviderGrants(t.Context(), now)
			return err
		})
		return n
	}
	grantThere := func(id string) bool {
		_, err := call(t, s, store.Tx.GetGrant, id)
		if err != nil && !errors.Is(err, trellis.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	same(t, "sweep at 1 deletes nothing", sweep(at(1)), 0)
	same(t, "sweep at 6: b2's request and its grant", sweep(at(6)), 2)
	same(t, "grants after the sweep at 6", []bool{grantThere("ar_a1"), grantThere("ar_b2"), grantThere("cc_c3")}, []bool{true, false, true})
	same(t, "sweep at 20: a1's request and both access tokens, and cc_c3", sweep(at(20)), 4)
	same(t, "grants after the sweep at 20", []bool{grantThere("ar_a1"), grantThere("cc_c3")}, []bool{true, false})
	if _, err := getRefresh(t, s, "rt-1", at(20)); err != nil {
		t.Fatalf("a live refresh token was swept: %v", err)
	}
	same(t, "sweep at 60: the refresh token and its grant", sweep(at(60)), 2)
	same(t, "sweep again", sweep(at(60)), 0)
	// what is swept is gone, also when read with an earlier clock
	_, err := getAuthRequest(t, s, "ar_a1", at(1))
	wantErr(t, "GetAuthRequest swept", err, trellis.ErrNotFound)
	_, err = getRefresh(t, s, "rt-1", at(1))
	wantErr(t, "GetRefreshToken swept", err, trellis.ErrNotFound)
}

func testPendingLogins(t *testing.T, s store.Store) {
	take := func(state string, now time.Time) (store.PendingLogin, error) {
		var p store.PendingLogin
		err := s.InTx(t.Context(), func(tx store.Tx) (err error) {
			p, err = tx.TakePendingLogin(t.Context(), sha(state), now)
			return err
		})
		return p, err
	}
	a := store.PendingLogin{Hash: sha("state-a"), Sealed: []byte{1, 2, 3}, CreatedAt: at(0), ExpiresAt: at(10)}
	b := store.PendingLogin{Hash: sha("state-b"), Sealed: []byte{4}, CreatedAt: at(0), ExpiresAt: at(5)}
	do(t, s, store.Tx.InsertPendingLogin, a)
	do(t, s, store.Tx.InsertPendingLogin, b)
	wantErr(t, "InsertPendingLogin duplicate", exec(t, s, store.Tx.InsertPendingLogin, a), trellis.ErrConflict)
	err := s.Read(t.Context(), func(tx store.Tx) error {
		_, err := tx.TakePendingLogin(t.Context(), sha("state-a"), at(1))
		return err
	})
	if err == nil {
		t.Errorf("TakePendingLogin in a Read succeeded: it must write")
	}
	got, err := take("state-a", at(1))
	if err != nil {
		t.Fatal(err)
	}
	same(t, "TakePendingLogin", got, a)
	_, err = take("state-a", at(1))
	wantErr(t, "TakePendingLogin again", err, trellis.ErrNotFound)
	_, err = take("state-b", at(5))
	wantErr(t, "TakePendingLogin at its expiry", err, trellis.ErrNotFound)
	var n int
	mustTx(t, s, func(tx store.Tx) (err error) {
		n, err = tx.SweepProviderGrants(t.Context(), at(6))
		return err
	})
	same(t, "sweep of the expired pending login", n, 1)
	_, err = take("state-b", at(1))
	wantErr(t, "TakePendingLogin swept", err, trellis.ErrNotFound)
}
