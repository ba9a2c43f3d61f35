package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

const testKey = "test-admin-key"

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// goroutines of closed servers may take a moment to exit on a loaded
		// machine (goleak's own retries last under a second): retry up to 10 s
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			err := goleak.Find(leakOptions...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}

var leakOptions = []goleak.Option{
	// process-wide workers started once by SpiceDB's dependencies
	goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
	goleak.IgnoreTopFunction("github.com/maypok86/otter/v2.(*Cache[...]).periodicCleanUp"),
	goleak.IgnoreTopFunction("cloud.google.com/go/spanner.(*endpointLatencyRegistry).runCleanup"),
}

// harness is a running Trellis API over a fresh embedded SpiceDB (memdb).
type harness struct {
	t     testing.TB
	url   string
	eng   *engine.Embedded
	graph engine.Engine // the cached engine the server uses
	store testStore     // the directory's store (tests tamper with the audit log through it)
	dir   *directory.Service
	clock *testClock // the directory's and token signer's clock
	// raw organization#parent writes, and the lineage derived from them (writeUpdates)
	parents map[string]string
	lineage map[string]bool
}

// testClock is a settable clock for expiry cases (invitations, keys, tokens).
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newHarness starts SpiceDB in process, applies app as the app schema and serves the API.
func newHarness(t testing.TB, app string) *harness {
	t.Helper()
	return newHarnessWith(t, app, directory.Config{MovePreviewTimeout: 5 * time.Minute}, nil)
}

// newHarnessWith is newHarness with the directory configured by cfg (its clock
// and resolver are the harness's) and, when wrap is set, reading and writing
// the graph through wrap(the cached engine).
func newHarnessWith(t testing.TB, app string, cfg directory.Config, wrap func(engine.Engine) engine.Engine) *harness {
	t.Helper()
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	// the check cache sits in front of SpiceDB, as in `trellis serve`
	cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 10000})
	if err != nil {
		t.Fatal(err)
	}
	schemas := schema.NewManager(cached)
	if _, err := schemas.Bootstrap(ctx, app); err != nil {
		eng.Close()
		t.Fatalf("bootstrap schema: %v", err)
	}
	clock := &testClock{now: time.Now().UTC().Truncate(time.Second)}
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: "http://trellis.test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t)
	graph := engine.Engine(cached)
	if wrap != nil {
		graph = wrap(cached)
	}
	cfg.Now, cfg.LookupTXT = clock.Now, fakeDNS.lookup
	dir, err := directory.New(directory.Deps{
		Store: st, Graph: graph,
		Signer: func(_ context.Context, c directory.AccessClaims) (string, time.Time, error) {
			return signer.Issue(federation.AccessClaims{Subject: c.User, Organization: c.Org, Actor: c.Actor, Impersonation: c.Impersonation, TTL: c.TTL})
		},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{
		Engine: cached, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: cached},
		Directory: dir, Tokens: signer, AdminKey: testKey,
	}))
	t.Cleanup(func() {
		srv.Close()
		cached.Close()
		if err := eng.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return &harness{t: t, url: srv.URL, eng: eng, graph: cached, store: st, dir: dir, clock: clock}
}

// testStore is a directory store that also lets tests play an attacker with
// raw write access to the audit table (memory and postgres both do).
type testStore interface {
	store.Store
	TamperAudit(org string, seq int64, mutate func(*audit.Event)) error
	DeleteAuditEvent(org string, seq int64) error
	TamperAuditHead(org string, mutate func(*audit.Head)) error
}

// newTestStore builds the store a harness uses: memory, unless a test runs
// the directory suite on PostgreSQL (see TestDirectoryOnPostgres).
var newTestStore = func(testing.TB) testStore { return memory.New() }

// dnsZone is a fake resolver for domain verification: tests publish TXT records in it.
type dnsZone struct {
	mu      sync.Mutex
	records map[string][]string
}

var fakeDNS = &dnsZone{records: map[string][]string{}}

func (z *dnsZone) publish(name, value string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[name] = append(z.records[name], value)
}

func (z *dnsZone) lookup(_ context.Context, name string) ([]string, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if v, ok := z.records[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// call sends body (marshalled unless it is a string or []byte) with the admin key.
func (h *harness) call(method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	return h.callAs(testKey, method, path, body)
}

func (h *harness) callAs(key, method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader: // sent chunked: no Content-Length
		rd = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	checkContract(h.t, req, resp.StatusCode, resp.Header, raw)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			h.t.Fatalf("%s %s: status %d, body not a JSON object: %q", method, path, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			h.t.Errorf("%s %s: status %d with Content-Type %q, want application/problem+json", method, path, resp.StatusCode, ct)
		}
	}
	return resp.StatusCode, out
}

// must calls and fails the test unless the status is want.
func (h *harness) must(want int, method, path string, body any) map[string]any {
	h.t.Helper()
	got, out := h.call(method, path, body)
	if got != want {
		h.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, out)
	}
	return out
}

// write touches relationships given as {resource, relation, subject} maps.
func (h *harness) write(rels ...map[string]any) string {
	h.t.Helper()
	var updates []map[string]any
	for _, r := range rels {
		updates = append(updates, map[string]any{"operation": "touch", "relationship": r})
	}
	return h.writeUpdates(updates...)
}

// writeUpdates applies updates shaped as POST /v1/relationships/write takes
// them and returns the write's token. App relationships go through that
// endpoint. A batch naming a system definition (organization, platform,
// impersonation…) is written to the engine the server uses, as the directory
// would: the raw-write API refuses those (issue 13 finding 11), and tests
// use them to build graphs without the directory.
func (h *harness) writeUpdates(updates ...map[string]any) string {
	h.t.Helper()
	system := false
	batch := make([]engine.RelationshipUpdate, len(updates))
	for i, u := range updates {
		batch[i] = h.update(u)
		system = system || schema.IsSystemDefinition(batch[i].Relationship.Resource.Type)
	}
	if system {
		batch = append(batch, h.derivedLineage(batch)...)
		tok, err := h.graph.WriteRelationships(context.Background(), batch)
		if err != nil {
			h.t.Fatalf("write to the engine: %v", err)
		}
		return tok
	}
	out := h.must(200, "POST", "/v1/relationships/write", map[string]any{"updates": updates})
	tok, _ := out["writtenAt"].(string)
	if tok == "" {
		h.t.Fatalf("write returned no writtenAt: %v", out)
	}
	return tok
}

// derivedLineage is what the directory writes beside the organization#parent
// changes of a raw batch: each organization's lineage relation to every
// ancestor (ADR 0018), so graphs built without the directory answer as the
// directory's do. It returns the lineage touches and deletes that bring the
// graph from the parents written before to those after the batch.
func (h *harness) derivedLineage(batch []engine.RelationshipUpdate) []engine.RelationshipUpdate {
	changed := false
	for _, u := range batch {
		r := u.Relationship
		if r.Resource.Type != "organization" || r.Relation != "parent" || r.Subject.Object.Type != "organization" {
			continue
		}
		if h.parents == nil {
			h.parents, h.lineage = map[string]string{}, map[string]bool{}
		}
		changed = true
		if u.Operation == engine.OpDelete {
			if h.parents[r.Resource.ID] == r.Subject.Object.ID {
				delete(h.parents, r.Resource.ID)
			}
		} else {
			h.parents[r.Resource.ID] = r.Subject.Object.ID
		}
	}
	if !changed {
		return nil
	}
	want := map[string]bool{}
	for child := range h.parents {
		seen := map[string]bool{child: true}
		for p := h.parents[child]; p != "" && !seen[p]; p = h.parents[p] { // a cycle stops where it closes
			seen[p] = true
			want[child+"|"+p] = true
		}
	}
	var out []engine.RelationshipUpdate
	lin := func(key string, op engine.Operation) {
		child, anc, _ := strings.Cut(key, "|")
		out = append(out, engine.RelationshipUpdate{Operation: op, Relationship: engine.Relationship{
			Resource: engine.ObjectRef{Type: "organization", ID: child}, Relation: "lineage",
			Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "organization", ID: anc}}}})
	}
	for k := range h.lineage {
		if !want[k] {
			lin(k, engine.OpDelete)
		}
	}
	for k := range want {
		if !h.lineage[k] {
			lin(k, engine.OpTouch)
		}
	}
	h.lineage = want
	return out
}

// update converts one update of the raw-write API's JSON to the engine's form.
func (h *harness) update(u map[string]any) engine.RelationshipUpdate {
	h.t.Helper()
	r, _ := u["relationship"].(map[string]any)
	str := func(k string) string { s, _ := r[k].(string); return s }
	res, err := engine.ParseObjectRef("resource", str("resource"))
	if err != nil {
		h.t.Fatal(err)
	}
	sub, err := engine.ParseSubjectRef("subject", str("subject"))
	if err != nil {
		h.t.Fatal(err)
	}
	rel := engine.Relationship{Resource: res, Relation: str("relation"), Subject: sub}
	if c, ok := r["caveat"].(map[string]any); ok {
		ctx, _ := c["context"].(map[string]any)
		rel.Caveat = &engine.Caveat{Name: c["name"].(string), Context: ctx}
	}
	if at := str("expiresAt"); at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			h.t.Fatal(err)
		}
		rel.ExpiresAt = &t
	}
	op, _ := u["operation"].(string)
	return engine.RelationshipUpdate{Operation: engine.Operation(op), Relationship: rel}
}

func rel(resource, relation, subject string) map[string]any {
	return map[string]any{"resource": resource, "relation": relation, "subject": subject}
}

// check returns the permissionship of one check.
func (h *harness) check(resource, permission, subject string) string {
	h.t.Helper()
	out := h.must(200, "POST", "/v1/check", map[string]any{"resource": resource, "permission": permission, "subject": subject})
	p, _ := out["permissionship"].(string)
	if allowed := out["allowed"] == true; allowed != (p == "HAS_PERMISSION") {
		h.t.Fatalf("allowed=%v disagrees with permissionship %s", out["allowed"], p)
	}
	return p
}

// docApp is the app schema most API tests use.
const docApp = `
caveat ip_allowed(ip ipaddress, cidr string) {
	ip.in_cidr(cidr)
}

definition document {
	relation org: organization
	relation owner: user
	relation viewer: user | user:* | group#member | user with ip_allowed | user with expiration
	relation banned: user
	permission edit = owner + org->manage
	permission view = (edit + viewer + org->access) - banned
}
`

// rawAuth sends a check with the Authorization header exactly as given.
func (h *harness) rawAuth(header string) int {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.url+"/v1/check", bytes.NewBufferString(`{"resource":"document:d1","permission":"view","subject":"user:ann"}`))
	req.Header.Set("Authorization", header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
