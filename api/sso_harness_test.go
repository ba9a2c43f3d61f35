package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
)

// newSSOHarness is a harness that also serves sign-in, with the server's
// own URL as issuer (the browser flows redirect to it).
func newSSOHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 10000})
	if err != nil {
		t.Fatal(err)
	}
	schemas := schema.NewManager(cached)
	if _, err := schemas.Bootstrap(ctx, ""); err != nil {
		eng.Close()
		t.Fatalf("bootstrap schema: %v", err)
	}
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	clock := &testClock{now: time.Now().UTC().Truncate(time.Second)}
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: issuer, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t)
	dir, err := directory.New(directory.Deps{
		Store: st, Graph: cached,
		Signer: func(_ context.Context, c directory.AccessClaims) (string, time.Time, error) {
			return signer.Issue(federation.AccessClaims{Subject: c.User, Organization: c.Org, Actor: c.Actor, Impersonation: c.Impersonation, TTL: c.TTL})
		},
	}, directory.Config{Now: clock.Now, LookupTXT: fakeDNS.lookup})
	if err != nil {
		t.Fatal(err)
	}
	fed, err := federation.New(federation.Config{Issuer: issuer, KEK: federation.RandomKEK(), Now: clock.Now}, dir, st, signer)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = api.New(api.Deps{
		Engine: cached, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: cached},
		Directory: dir, Federation: fed, Tokens: signer, AdminKey: testKey,
	})
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		cached.Close()
		if err := eng.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return &harness{t: t, url: srv.URL, eng: eng, graph: cached, store: st, dir: dir, clock: clock}
}

// browser is an HTTP client that keeps cookies, follows redirects and posts forms.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// get follows every redirect and returns the final response's URL, status and body.
func (b *browser) get(u string) (*url.URL, int, string) {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Request.URL, resp.StatusCode, string(body)
}

func (b *browser) post(u string, form url.Values) (*url.URL, int, string) {
	b.t.Helper()
	resp, err := b.client.PostForm(u, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Request.URL, resp.StatusCode, string(body)
}

// app is an application registered in Trellis, with its redirect endpoint.
type app struct {
	h                *harness
	id, clientID     string
	secret, redirect string
	mu               sync.Mutex
	got              url.Values // the last query its redirect endpoint received
}

func registerApp(h *harness) *app {
	h.t.Helper()
	a := &app{h: h}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.got = r.URL.Query()
		a.mu.Unlock()
		fmt.Fprint(w, "app callback")
	}))
	h.t.Cleanup(cb.Close)
	a.redirect = cb.URL + "/cb"
	out := h.provider().do(201, "POST", "/v1/applications", map[string]any{"name": "Acme CRM", "type": "web", "redirectUris": []string{a.redirect}})
	a.id, a.clientID, a.secret = str(out, "id"), str(out, "clientId"), str(out, "clientSecret")
	return a
}

func (a *app) last() url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got
}

// pkce returns a verifier and its S256 challenge.
func pkce() (string, string) {
	v := strings.Repeat("v", 20) + fmt.Sprint(time.Now().UnixNano())
	sum := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is the application's sign-in link with extra parameters.
func (a *app) authorizeURL(state, challenge string, extra url.Values) string {
	q := url.Values{"client_id": {a.clientID}, "redirect_uri": {a.redirect}, "response_type": {"code"},
		"scope": {"openid email profile offline_access"}, "state": {state}, "nonce": {"app-nonce"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return a.h.url + "/sso/authorize?" + q.Encode()
}

// tokenCall posts to /oauth2/token with the app's credentials.
func (a *app) tokenCall(form url.Values) (int, map[string]any) {
	a.h.t.Helper()
	req, _ := http.NewRequest("POST", a.h.url+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(a.clientID), url.QueryEscape(a.secret))
	return doJSON(a.h.t, req)
}

func (a *app) introspect(token string) map[string]any {
	a.h.t.Helper()
	req, _ := http.NewRequest("POST", a.h.url+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(a.clientID), url.QueryEscape(a.secret))
	status, out := doJSON(a.h.t, req)
	if status != 200 {
		a.h.t.Fatalf("introspect: status %d: %v", status, out)
	}
	return out
}

func doJSON(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: status %d, not JSON: %q", req.Method, req.URL.Path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// verifyIDToken checks an ID token as a relying party would (go-oidc against
// Trellis's discovery and JWKS) and returns its claims.
func (a *app) verifyIDToken(raw string) map[string]any {
	a.h.t.Helper()
	ctx := context.Background()
	p, err := gooidc.NewProvider(ctx, a.h.url)
	if err != nil {
		a.h.t.Fatalf("Trellis discovery: %v", err)
	}
	idt, err := p.Verifier(&gooidc.Config{ClientID: a.clientID, Now: a.h.clock.Now}).Verify(ctx, raw)
	if err != nil {
		a.h.t.Fatalf("verify Trellis id_token: %v", err)
	}
	var claims map[string]any
	_ = idt.Claims(&claims)
	return claims
}

// jwtClaims decodes a JWT's payload (signature checked elsewhere).
func jwtClaims(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

var refusalCode = regexp.MustCompile(`<code id="code">([a-z_]+)</code>`)

// pageCode is the stable code of a refusal page.
func pageCode(body string) string {
	if m := refusalCode.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}
