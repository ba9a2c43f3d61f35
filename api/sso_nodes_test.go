package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/federation/idptest"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/pgtest"
	"github.com/trellis-iam/trellis/store/postgres"
)

// providerNode is one Trellis node: its own store pool, directory, token
// signer, sign-in service and HTTP handler, on the cluster's database.
type providerNode struct {
	handler http.Handler
	store   *postgres.Store
}

// providerCluster is two Trellis nodes on one PostgreSQL database behind a
// load balancer whose URL is the issuer. route picks the node of each
// request (0 or 1), as a load balancer without sticky sessions may.
type providerCluster struct {
	t      *testing.T
	dbURL  string
	issuer string
	eng    *engine.Embedded
	kek    []byte
	clock  *testClock

	mu    sync.Mutex
	nodes [2]*providerNode
	route func(r *http.Request) int
}

func newProviderCluster(t *testing.T) (*providerCluster, *harness) {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.Start(t).NewDatabase(t)
	if err := postgres.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	if _, err := schema.NewManager(eng).Bootstrap(ctx, ""); err != nil {
		t.Fatal(err)
	}
	c := &providerCluster{t: t, dbURL: dbURL, eng: eng, kek: federation.RandomKEK(),
		clock: &testClock{now: time.Now().UTC().Truncate(time.Second)}, route: func(*http.Request) int { return 0 }}
	lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		n := c.nodes[c.route(r)]
		c.mu.Unlock()
		n.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(lb.Close)
	c.issuer = lb.URL
	c.nodes[0], c.nodes[1] = c.startNode(), c.startNode()
	return c, &harness{t: t, url: lb.URL, eng: eng, graph: eng, store: c.nodes[0].store, clock: c.clock}
}

// startNode builds a node as serve does, sharing only the database, the
// engine, the key-encryption key and the issuer with the others.
func (c *providerCluster) startNode() *providerNode {
	t := c.t
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: c.issuer, Now: c.clock.Now, Keys: st, KeyEncryptionKey: c.kek})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(directory.Deps{
		Store: st, Graph: c.eng,
		Signer: func(_ context.Context, ac directory.AccessClaims) (string, time.Time, error) {
			return signer.Issue(federation.AccessClaims{Subject: ac.User, Organization: ac.Org, Actor: ac.Actor, Impersonation: ac.Impersonation, TTL: ac.TTL})
		},
	}, directory.Config{Now: c.clock.Now, LookupTXT: fakeDNS.lookup})
	if err != nil {
		t.Fatal(err)
	}
	fed, err := federation.New(federation.Config{Issuer: c.issuer, KEK: c.kek, Now: c.clock.Now}, dir, st, signer)
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Deps{Engine: c.eng, Schemas: schema.NewManager(c.eng), Actors: engine.ImpersonationGate{Engine: c.eng},
		Directory: dir, Federation: fed, Tokens: signer, AdminKey: testKey})
	return &providerNode{handler: h, store: st}
}

// restart stops node i (its store pool closes; nothing of it is left) and
// starts it again on the same database.
func (c *providerCluster) restart(i int) {
	c.mu.Lock()
	old := c.nodes[i]
	c.mu.Unlock()
	if err := old.store.Close(); err != nil {
		c.t.Fatal(err)
	}
	n := c.startNode()
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
}

// to sends every request to node i.
func (c *providerCluster) to(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.route = func(*http.Request) int { return i }
}

// routeBy sends each request to the node pick chooses.
func (c *providerCluster) routeBy(pick func(r *http.Request) int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.route = pick
}

// TestSSOProviderStateSharedByNodes drives the OpenID provider's protocol
// over HTTP through two Trellis nodes on one PostgreSQL database: each step
// of a sign-in (authorize, login, the IdP's answer, the code's issue and
// exchange) may land on either node, a refresh
// token issued by one node refreshes on the other, rotation and revocation
// on one node are seen by the other, and a restarted node keeps its
// refresh tokens working. While this state lived in each process, every
// one of these failed.
func TestSSOProviderStateSharedByNodes(t *testing.T) {
	c, h := newProviderCluster(t)
	idp := idptest.NewOIDC()
	t.Cleanup(idp.Close)
	w := &ssoWorld{h: h, idp: idp, org: createOrg(h, testKey, "Acme", "acme", "")}
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/acme/domains", map[string]any{"domain": "acme.example"})
	p.do(200, "POST", "/v1/organizations/acme/domains/acme.example/verify", map[string]any{"method": "manual", "reason": "test"})
	w.conn = str(p.do(201, "POST", "/v1/organizations/acme/connections", map[string]any{
		"type": "oidc", "issuer": idp.URL, "clientId": idp.ClientID, "clientSecret": idp.ClientSecret}), "id")
	w.app = registerApp(h)
	idp.SetUser(map[string]any{"sub": "okta|alice", "email": "alice@acme.example", "email_verified": true, "name": "Alice"})

	// step runs the steps in order, on t: the harness's helpers fail t itself
	step := func(name string, fn func()) {
		t.Logf("step: %s", name)
		fn()
	}
	// signInOn runs a sign-in with every request on node i and exchanges its code there
	signInOn := func(i int) map[string]any {
		t.Helper()
		c.to(i)
		code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"acme"}})
		status, tok := w.exchange(code, verifier)
		if status != 200 {
			t.Fatalf("exchange on node %d: %d %v", i, status, tok)
		}
		return tok
	}
	refreshOn := func(i int, rt string) (int, map[string]any) {
		t.Helper()
		c.to(i)
		return w.refresh(rt)
	}
	introspectOn := func(i int, at string) map[string]any {
		t.Helper()
		c.to(i)
		return w.app.introspect(at)
	}

	step("every step of a sign-in on another node than the one before", func() {
		// as a load balancer without affinity may: the application's
		// /authorize on node 0, the login page (and the browser's trip to the
		// IdP) on node 1, the IdP's answer on node 0, the code's issue on
		// node 1, its exchange on node 0
		hops := map[string]int{"/sso/authorize": 0, "/sso/login": 1, "/sso/oidc/callback": 0, "/sso/authorize/callback": 1, "/oauth2/token": 0}
		var seen sync.Map
		c.routeBy(func(r *http.Request) int {
			i, ok := hops[r.URL.Path]
			if !ok {
				t.Errorf("unexpected request %s through the load balancer", r.URL.Path)
			}
			seen.Store(r.URL.Path, true)
			return i
		})
		code, verifier := w.signIn(newBrowser(t), url.Values{"login_hint": {"alice@acme.example"}})
		status, tok := w.exchange(code, verifier)
		if status != 200 {
			t.Fatalf("code issued by node 1, exchanged on node 0: %d %v", status, tok)
		}
		for path := range hops {
			if _, ok := seen.Load(path); !ok {
				t.Fatalf("the sign-in never reached %s: the test routes nothing there", path)
			}
		}
		if in := introspectOn(1, str(tok, "access_token")); in["active"] != true || in["org"] != w.org {
			t.Fatalf("node 1 introspects node 0's access token: %v, want active", in)
		}
		// the code is spent on every node
		c.to(1)
		if status, out := w.exchange(code, verifier); status != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("the code exchanged again on node 1: %d %v, want 400 invalid_grant", status, out)
		}
		if in := introspectOn(0, str(tok, "access_token")); in["active"] != false {
			t.Fatalf("after the code's reuse on node 1, node 0 still introspects its token as %v, want inactive", in)
		}
	})

	step("refresh and rotation across nodes", func() {
		tok := signInOn(0)
		rt0 := str(tok, "refresh_token")
		status, tok1 := refreshOn(1, rt0)
		if status != 200 || str(tok1, "refresh_token") == "" {
			t.Fatalf("node 1 refreshes node 0's refresh token: %d %v", status, tok1)
		}
		rt1 := str(tok1, "refresh_token")
		if status, tok2 := refreshOn(0, rt1); status != 200 {
			t.Fatalf("node 0 refreshes node 1's refresh token: %d %v", status, tok2)
		} else {
			rt1 = str(tok2, "refresh_token")
		}
		// rt0 was spent on node 1: node 0 refuses it, and the reuse ends the family everywhere
		if status, out := refreshOn(0, rt0); status != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("the refresh token rotated on node 1, presented on node 0: %d %v, want 400 invalid_grant", status, out)
		}
		if status, out := refreshOn(1, rt1); status != 400 {
			t.Fatalf("after reuse on node 0, node 1 still refreshes the family's newest token: %d %v", status, out)
		}
	})

	step("one refresh token presented to both nodes at once refreshes once", func() {
		rt := str(signInOn(0), "refresh_token")
		c.routeBy(func(r *http.Request) int {
			if r.Header.Get("X-Node") == "1" {
				return 1
			}
			return 0
		})
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
				req, _ := http.NewRequest("POST", h.url+"/oauth2/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Node", string(rune('0'+i)))
				req.SetBasicAuth(url.QueryEscape(w.app.clientID), url.QueryEscape(w.app.secret))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		if slices.Sort(statuses); !slices.Equal(statuses, []int{200, 400}) {
			t.Fatalf("one refresh token on both nodes at once: statuses %v, want one 200 and one 400", statuses)
		}
	})

	step("revocation on one node is seen by the other", func() {
		tok := signInOn(0)
		c.to(1)
		form := url.Values{"token": {str(tok, "refresh_token")}, "token_type_hint": {"refresh_token"}}
		req, _ := http.NewRequest("POST", h.url+"/oauth2/revoke", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(w.app.clientID), url.QueryEscape(w.app.secret))
		if status, out := doJSON(t, req); status != 200 {
			t.Fatalf("revoke on node 1: %d %v", status, out)
		}
		if status, out := refreshOn(0, str(tok, "refresh_token")); status != 400 {
			t.Fatalf("node 0 refreshes a token revoked on node 1: %d %v", status, out)
		}
		if in := introspectOn(0, str(tok, "access_token")); in["active"] != false {
			t.Fatalf("node 0 introspects an access token of a grant revoked on node 1: %v, want inactive", in)
		}

		// logout on node 0 ends the grants node 1 issued
		p.do(200, "PATCH", "/v1/applications/"+w.app.id, map[string]any{"postLogoutRedirectUris": []string{w.app.redirect + "/bye"}})
		tok = signInOn(1)
		c.to(0)
		q := url.Values{"id_token_hint": {str(tok, "id_token")}, "post_logout_redirect_uri": {w.app.redirect + "/bye"}}
		if u, status, _ := newBrowser(t).get(h.url + "/oauth2/logout?" + q.Encode()); status != 200 || u.Path != "/cb/bye" {
			t.Fatalf("logout on node 0 ended at %s %d, want the post-logout URI", u, status)
		}
		if status, out := refreshOn(1, str(tok, "refresh_token")); status != 400 {
			t.Fatalf("node 1 refreshes after logout on node 0: %d %v", status, out)
		}
	})

	step("a restarted node keeps refresh tokens working", func() {
		tok := signInOn(0)
		c.restart(0)
		status, tok1 := refreshOn(0, str(tok, "refresh_token"))
		if status != 200 {
			t.Fatalf("refresh on node 0 after its restart: %d %v", status, tok1)
		}
		if in := introspectOn(0, str(tok1, "access_token")); in["active"] != true {
			t.Fatalf("introspection after the restart: %v, want active", in)
		}
		c.restart(1)
		if status, out := refreshOn(1, str(tok1, "refresh_token")); status != 200 {
			t.Fatalf("refresh on node 1 after its restart: %d %v", status, out)
		}
	})
}

// TestSSOOnPostgres runs the provider's flows again with its state in the
// PostgreSQL store (each on a fresh migrated database).
func TestSSOOnPostgres(t *testing.T) {
	onPostgres(t, []namedTest{
		{"SignInThroughOrgIdP", TestSSOSignInThroughOrgIdP},
		{"UserinfoRevocationAndLogout", TestSSOUserinfoRevocationAndLogout},
		{"DiscoveryPickerAndHostedLogin", TestSSODiscoveryPickerAndHostedLogin},
		{"OIDCSecurityCases", TestSSOOIDCSecurityCases},
		{"ImpersonationActClaim", TestSSOImpersonationActClaim},
		{"TokenClientCredentials", TestTokenClientCredentials},
		{"TokenProviderAccessTokenAtAPI", TestTokenProviderAccessTokenAtAPI},
	})
}
