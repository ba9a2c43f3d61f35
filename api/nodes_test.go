package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// node is one Trellis node of a two-node test: its own check cache, schema
// manager, token signer and directory over a shared engine and store.
type node struct {
	*harness
	schemas *schema.Manager
	signer  *federation.Signer
}

// newNodes starts n API servers that share one embedded SpiceDB and one
// directory store, as Trellis nodes behind a load balancer do.
func newNodes(t *testing.T, n int, st store.Store, kek []byte) []node {
	t.Helper()
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	var out []node
	for range n {
		out = append(out, startNode(t, eng, st, kek))
	}
	return out
}

func startNode(t *testing.T, eng *engine.Embedded, st store.Store, kek []byte) node {
	t.Helper()
	ctx := context.Background()
	cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	schemas := schema.NewManager(cached, st)
	if _, err := schemas.Bootstrap(ctx, ""); err != nil {
		t.Fatal(err)
	}
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: "http://trellis.test", Keys: st, KeyEncryptionKey: kek})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(directory.Deps{Store: st, Graph: cached,
		Signer: func(_ context.Context, c directory.AccessClaims) (string, time.Time, error) {
			return signer.Issue(federation.AccessClaims{Subject: c.User, Organization: c.Org, TTL: c.TTL})
		}}, directory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{
		Engine: cached, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: cached},
		Directory: dir, Tokens: signer, AdminKey: testKey,
	}))
	t.Cleanup(func() { srv.Close(); cached.Close() })
	return node{harness: &harness{t: t, url: srv.URL, graph: cached, dir: dir}, schemas: schemas, signer: signer}
}

// TestNodesShareSchemaVersions: versions live in the store, so a version one
// node applied is the one every node serves, a stale expectedVersion is
// refused on whichever node it reaches, and any past version reads back.
func TestNodesShareSchemaVersions(t *testing.T) {
	nodes := newNodes(t, 2, memory.New(), testKEK)
	a, b := nodes[0], nodes[1]
	app := "definition app/document {\n\trelation org: organization\n\tpermission view = org->access\n}"
	code, body := a.call(http.MethodPut, "/v1/schema", map[string]any{"text": app, "expectedVersion": 1})
	if code != http.StatusOK || body["version"] != float64(2) {
		t.Fatalf("PUT /v1/schema on node A = %d %v, want 200 version 2", code, body)
	}
	code, body = b.call(http.MethodGet, "/v1/schema", nil)
	if code != http.StatusOK || body["version"] != float64(2) || body["appText"] != app {
		t.Fatalf("GET /v1/schema on node B = %d %v, want version 2 with A's text", code, body)
	}
	code, body = b.call(http.MethodPut, "/v1/schema", map[string]any{"text": "", "expectedVersion": 1})
	if code != http.StatusConflict {
		t.Fatalf("PUT /v1/schema on node B with a stale expectedVersion = %d %v, want 409", code, body)
	}
	code, body = b.call(http.MethodGet, "/v1/schema/versions", nil)
	if vs, _ := body["versions"].([]any); code != http.StatusOK || len(vs) != 2 {
		t.Fatalf("GET /v1/schema/versions on node B = %d %v, want 2 versions", code, body)
	}
	code, body = b.call(http.MethodGet, "/v1/schema/versions/1", nil)
	if text, _ := body["text"].(string); code != http.StatusOK || body["version"] != float64(1) || text == "" || body["appText"] != "" {
		t.Fatalf("GET /v1/schema/versions/1 = %d %v, want version 1 with the system text", code, body)
	}
	for path, want := range map[string]int{"/v1/schema/versions/3": 404, "/v1/schema/versions/0": 400, "/v1/schema/versions/x": 400,
		"/v1/schema/versions/-1": 400, "/v1/schema/versions/99999999999999999999": 400} {
		if code, body := a.call(http.MethodGet, path, nil); code != want {
			t.Errorf("GET %s = %d %v, want %d", path, code, body, want)
		}
	}
	// only provider admins read past schemas: no credentials is a 401, a user's token a 403
	if code, _ := a.callAs("", http.MethodGet, "/v1/schema/versions/1", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/schema/versions/1 without credentials = %d, want 401", code)
	}
	code, body = a.call(http.MethodPost, "/v1/users", map[string]any{"email": "eve@example.com", "name": "Eve"})
	if code != http.StatusCreated {
		t.Fatalf("create user = %d %v", code, body)
	}
	_, body = a.call(http.MethodPost, "/v1/tokens", map[string]any{"subject": "user:" + body["id"].(string)})
	if code, _ := b.callAs(body["accessToken"].(string), http.MethodGet, "/v1/schema/versions/1", nil); code != http.StatusForbidden {
		t.Errorf("GET /v1/schema/versions/1 with a user's token = %d, want 403", code)
	}
	// a third node started later adopts the newest version instead of bootstrapping its own
	if err := b.schemas.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := b.schemas.Current(); v.Version != 2 {
		t.Fatalf("node B's current version after refresh = %d, want 2", v.Version)
	}
}

// testKEK is the key-encryption key the nodes of a test share.
var testKEK = []byte("0123456789abcdef0123456789abcdef")

// TestNodesVerifyEachOthersTokens: signing keys live in the store (sealed
// under the shared key-encryption key), so a token one node minted verifies
// on the other, and on a node started afterwards (a restart); a node given
// another key-encryption key refuses to start rather than mint tokens no
// other node accepts.
func TestNodesVerifyEachOthersTokens(t *testing.T) {
	st := memory.New()
	nodes := newNodes(t, 2, st, testKEK)
	a, b := nodes[0], nodes[1]
	code, body := a.call(http.MethodPost, "/v1/users", map[string]any{"email": "ann@example.com", "name": "Ann"})
	if code != http.StatusCreated {
		t.Fatalf("create user = %d %v", code, body)
	}
	code, body = a.call(http.MethodPost, "/v1/tokens", map[string]any{"subject": "user:" + body["id"].(string)})
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST /v1/tokens on node A = %d %v", code, body)
	}
	token := body["accessToken"].(string)
	if code, body := b.callAs(token, http.MethodGet, "/v1/organizations", nil); code != http.StatusOK {
		t.Fatalf("node A's token on node B = %d %v, want 200", code, body)
	}
	if !strings.Contains(string(b.signer.JWKS()), tokenKid(t, a.signer, token)) {
		t.Fatalf("node B's JWKS lacks node A's key")
	}
	// a node started later (a restart) keeps accepting it
	eng, err := engine.StartEmbedded(context.Background(), engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	c := startNode(t, eng, st, testKEK)
	if _, err := c.signer.Verify(token); err != nil {
		t.Fatalf("a restarted node refuses a token minted before: %v", err)
	}
	// rotation on one node: the other signs with the new key after a refresh and still accepts the old one
	if err := a.signer.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := b.signer.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	fresh, _, err := b.signer.Issue(federation.AccessClaims{Subject: "someone"})
	if err != nil {
		t.Fatal(err)
	}
	if tokenKid(t, b.signer, fresh) == tokenKid(t, a.signer, token) {
		t.Fatalf("node B still signs with the key node A rotated away from")
	}
	for name, n := range map[string]node{"A": a, "B": b} {
		for _, tok := range []string{token, fresh} {
			if _, err := n.signer.Verify(tok); err != nil {
				t.Errorf("node %s refuses a token after rotation: %v", name, err)
			}
		}
	}
	if _, err := federation.NewSigner(federation.SignerConfig{Issuer: "http://trellis.test", Keys: st, KeyEncryptionKey: []byte("another key, also 32 bytes long!")}); err == nil {
		t.Fatalf("a signer with another key-encryption key started over the stored keys")
	}
}

// tokenKid is the kid a token (that s accepts) was signed with.
func tokenKid(t *testing.T, s *federation.Signer, token string) string {
	t.Helper()
	if _, err := s.Verify(token); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s: %v", raw, err)
	}
	return h.Kid
}
