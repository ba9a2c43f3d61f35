//go:build linux

package main

// The loopback cluster (issue 14, deploy/cluster.sh): one PostgreSQL, two
// SpiceDB servers on its database (`trellis spicedb serve`, postgres
// datastore, one preshared key) and two Trellis nodes in remote mode, each on
// its own SpiceDB, sharing the directory store, the issuer and the keys; every
// one a real OS process of one trellis binary. The test drives both nodes at
// once and holds them to what several nodes promise:
//
//   - a token signed by one node is accepted by the other (and a forged one
//     by neither);
//   - a schema change on one node makes the same expectedVersion stale on the
//     other (409), and the other serves the new version;
//   - read-your-writes across nodes: a relationship written through one node
//     is allowed on the other at once when the check passes the write's
//     token, although the other node had the denial cached;
//   - no stale allow after a revocation: the writing node denies at once, the
//     other node at once with the revocation's token (its cached allow is not
//     served), and without a token within the Watch's lag, after which it
//     never allows again; the same for a membership removed through the
//     directory (no token there: the other node with fullyConsistent);
//   - kill -9 of one SpiceDB server and then of one Trellis node while both
//     nodes take writes: every acknowledged write is visible on both nodes
//     afterwards (in the directory and granted by the graph) and nothing is
//     half-applied (crash_test.go's invariants).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store/pgtest"
)

const (
	clusterSpiceDBKey = "cluster-spicedb-key"
	clusterIssuer     = "https://cluster.trellis.test"
	clusterKEK        = "cluster-key-encryption-key-0123456789"
	clusterAuditKey   = "cluster-audit-key-0123456789abcdef"
	clusterLag        = 15 * time.Second // bound on a Watch event reaching the other node (milliseconds when healthy)
)

func TestLoopbackCluster(t *testing.T) {
	started := time.Now()
	pg := clusterPostgres(t)
	db := pg.NewDatabase(t)
	bin := buildTrellis(t)
	if out, err := exec.Command(bin, "migrate", "--database-url", db, "--store-url", db).CombinedOutput(); err != nil {
		t.Fatalf("trellis migrate: %v\n%s", err, out)
	}
	sdb := [2]*trellisProc{startSpiceDB(t, bin, db), startSpiceDB(t, bin, db)}
	a := startNode(t, bin, db, sdb[0])
	b := startNode(t, bin, db, sdb[1])
	nodes := [2]*trellisProc{a, b}
	t.Logf("cluster up in %v: node A %s on SpiceDB %s, node B %s on SpiceDB %s",
		time.Since(started).Round(time.Millisecond), a.base, sdb[0].base, b.base, sdb[1].base)

	// First the kills, while the database holds only what the load wrote
	// (the invariants account for every organization and audit event); then
	// the rest on the restarted nodes.
	var rootID string
	t.Run("kill", func(st *testing.T) { rootID = clusterKills(st, t, nodes, sdb) })
	if t.Failed() {
		return
	}
	t.Run("tokens", func(t *testing.T) { clusterTokens(t, nodes) })
	t.Run("schema", func(t *testing.T) { clusterSchema(t, nodes) })
	if t.Failed() {
		return
	}
	t.Run("consistency", func(t *testing.T) {
		for i := range 6 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				clusterReadYourWrites(t, nodes[i%2], nodes[1-i%2], i)
			})
		}
		t.Run("membership", func(t *testing.T) {
			t.Parallel()
			clusterMembershipRevocation(t, nodes, rootID)
		})
	})
	t.Logf("whole test: %v", time.Since(started).Round(time.Millisecond))
}

// clusterPostgres starts a throwaway PostgreSQL; without its binaries the
// test is skipped, unless CI or TRELLIS_REQUIRE_POSTGRES is set, which fails it.
func clusterPostgres(t *testing.T) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.StartServer()
	if errors.Is(err, pgtest.ErrNotInstalled) {
		if os.Getenv("TRELLIS_REQUIRE_POSTGRES") != "" || os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required here (CI or TRELLIS_REQUIRE_POSTGRES): %v", err)
		}
		t.Skipf("%v; skipping %s", err, t.Name())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return srv
}

// freeAddr is a loopback address free now; a process may take it before
// ours binds it, which the starters retry.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSpiceDB runs `trellis spicedb serve` on the postgres datastore; its
// base is the gRPC address. It returns once SpiceDB answers.
func startSpiceDB(t *testing.T, bin, db string) *trellisProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		p := &trellisProc{bin: bin, base: addr, out: &syncBuffer{}, args: []string{
			"spicedb", "serve", "--grpc-addr", addr, "--grpc-preshared-key", clusterSpiceDBKey,
			"--datastore-engine", "postgres", "--datastore-conn-uri", db,
		}}
		if err := p.start(t); err != nil {
			t.Fatal(err)
		}
		err := waitSpiceDB(p)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("spicedb %s output:\n%s", addr, logTail(p.out.String()))
				}
			})
			return p
		}
		if attempt < 3 && errors.Is(err, errTrellisExited) && strings.Contains(p.out.String(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

// waitSpiceDB dials the server until it answers with the preshared key, or fails
// once the process has exited.
func waitSpiceDB(p *trellisProc) error {
	deadline := time.Now().Add(readyWithin)
	for {
		r, err := engine.Dial(context.Background(), engine.RemoteConfig{Endpoint: p.base, Token: clusterSpiceDBKey,
			Insecure: true, ConnectTimeout: 500 * time.Millisecond})
		if err == nil {
			return r.Close()
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w: spicedb serve: %v\n%s", errTrellisExited, p.cmd.ProcessState, logTail(p.out.String()))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("spicedb at %s not answering within %v: %v\n%s", p.base, readyWithin, err, logTail(p.out.String()))
		}
	}
}

// startNode runs a Trellis node in remote mode on sdb (Watch on) with the
// store on PostgreSQL, and waits for /readyz. (No demo: the kill phase's
// invariants account for every organization in the database.)
func startNode(t *testing.T, bin, db string, sdb *trellisProc) *trellisProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		p := &trellisProc{bin: bin, base: "http://" + addr, out: &syncBuffer{}, args: []string{
			"serve", "--addr", addr, "--spicedb-endpoint", sdb.base, "--spicedb-token", clusterSpiceDBKey, "--spicedb-insecure",
			"--store", "postgres", "--store-url", db, "--issuer", clusterIssuer, "--key-encryption-key", clusterKEK,
			"--admin-key", crashKey, "--audit-key", clusterAuditKey,
		}}
		if err := p.start(t); err != nil {
			t.Fatal(err)
		}
		err := p.waitReady(readyWithin)
		if err == nil {
			t.Cleanup(func() {
				if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
					t.Errorf("the race detector found a data race in the node at %s", p.base)
				}
				if t.Failed() {
					if lines := errorLines(p.out.String()); lines != "" {
						t.Logf("node %s logged errors:\n%s", p.base, lines)
					}
					t.Logf("node %s output:\n%s", p.base, logTail(p.out.String()))
				}
			})
			return p
		}
		if attempt < 3 && errors.Is(err, errTrellisExited) && strings.Contains(p.out.String(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

// clusterTokens: a token one node signs is accepted by the other, a forged
// one by neither.
func clusterTokens(t *testing.T, nodes [2]*trellisProc) {
	for i, n := range nodes {
		other := nodes[1-i]
		code, tok := call(t, "POST", n.base+"/v1/tokens", crashKey, `{"subject":"user:boss","organization":"crash-root"}`)
		token, _ := tok["accessToken"].(string)
		if code != http.StatusCreated && code != http.StatusOK || token == "" {
			t.Fatalf("POST /v1/tokens on %s: %d %v", n.base, code, tok)
		}
		for _, m := range nodes {
			if code, got := call(t, "GET", m.base+"/v1/organizations/crash-root/members?pageSize=1", token, ""); code != http.StatusOK {
				t.Errorf("boss's token from %s on %s: %d %v, want 200", n.base, m.base, code, got)
			}
		}
		forged := token[:len(token)-4] + flip(token[len(token)-4:])
		if code, got := call(t, "GET", other.base+"/v1/organizations/crash-root/members?pageSize=1", forged, ""); code != http.StatusUnauthorized {
			t.Errorf("a forged token on %s: %d %v, want 401", other.base, code, got)
		}
	}
}

// flip changes every character of s (base64url signature characters).
func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

// clusterSchema: node A applies the demo app schema as version v+1 with
// expectedVersion v; the same expectedVersion on node B is stale (409), and
// B serves v+1.
func clusterSchema(t *testing.T, nodes [2]*trellisProc) {
	a, b := nodes[0], nodes[1]
	code, cur := call(t, "GET", b.base+"/v1/schema", crashKey, "")
	v, _ := cur["version"].(float64)
	if code != http.StatusOK || v < 1 {
		t.Fatalf("GET /v1/schema on B: %d %v", code, cur)
	}
	put := func(n *trellisProc, text string) (int, map[string]any) {
		return call(t, "PUT", n.base+"/v1/schema", crashKey, fmt.Sprintf(`{"text":%q,"expectedVersion":%d}`, text, int(v)))
	}
	code, applied := put(a, demoAppSchema)
	written, _ := applied["writtenAt"].(string)
	if code != http.StatusOK || applied["version"] != v+1 || written == "" {
		t.Fatalf("PUT /v1/schema on A with expectedVersion %d: %d %v, want version %d", int(v), code, applied, int(v)+1)
	}
	if code, got := put(b, demoAppSchema+"\ndefinition cluster_b {}\n"); code != http.StatusConflict {
		t.Fatalf("PUT /v1/schema on B with the same expectedVersion %d: %d %v, want 409 (stale)", int(v), code, got)
	}
	code, now := call(t, "GET", b.base+"/v1/schema", crashKey, "")
	if text, _ := now["text"].(string); code != http.StatusOK || now["version"] != v+1 || !strings.Contains(text, "definition document") || strings.Contains(text, "cluster_b") {
		t.Fatalf("GET /v1/schema on B after A's change: %d %v, want version %d with document", code, now, int(v)+1)
	}
	// B checks against the new definitions at once with the change's token,
	// and without it once its Watch has delivered the change (until then its
	// reads may be at a revision before it: 400, no such definition).
	check := `{"resource":"document:schema-probe","permission":"view","subject":"user:boss"`
	if code, got := call(t, "POST", b.base+"/v1/check", crashKey, check+`,"consistency":`+atLeastAsFresh(written)+`}`); code != http.StatusOK || got["allowed"] != false {
		t.Fatalf("a check of the new definition on B with the schema change's token: %d %v", code, got)
	}
	start := time.Now()
	for {
		code, got := call(t, "POST", b.base+"/v1/check", crashKey, check+`}`)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusBadRequest || time.Since(start) > clusterLag {
			t.Fatalf("a check of the new definition on B: %d %v after %v", code, got, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond) // polling B's Watch; bounded above
	}
	t.Logf("B checks the new definitions without a token after %v", time.Since(start).Round(time.Millisecond))
}

type checkAnswer struct {
	allowed, cached bool
	checkedAt       string
}

func clusterCheck(t *testing.T, n *trellisProc, resource, permission, subject, consistency string) checkAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"resource":%q,"permission":%q,"subject":%q`, resource, permission, subject)
	if consistency != "" {
		body += `,"consistency":` + consistency
	}
	code, got := call(t, "POST", n.base+"/v1/check", crashKey, body+"}")
	if code != http.StatusOK {
		t.Fatalf("check %s#%s@%s on %s: %d %v", resource, permission, subject, n.base, code, got)
	}
	at, _ := got["checkedAt"].(string)
	return checkAnswer{allowed: got["allowed"] == true, cached: got["cached"] == true, checkedAt: at}
}

func atLeastAsFresh(token string) string { return fmt.Sprintf(`{"atLeastAsFresh":%q}`, token) }

const fullyConsistent = `{"fullyConsistent":true}`

// clusterRelationship writes one relationship through n and returns the write's token.
func clusterRelationship(t *testing.T, n *trellisProc, op, resource, relation, subject string) string {
	t.Helper()
	body := fmt.Sprintf(`{"updates":[{"operation":%q,"relationship":{"resource":%q,"relation":%q,"subject":%q}}]}`, op, resource, relation, subject)
	code, got := call(t, "POST", n.base+"/v1/relationships/write", crashKey, body)
	token, _ := got["writtenAt"].(string)
	if code != http.StatusOK || token == "" {
		t.Fatalf("%s %s#%s@%s on %s: %d %v", op, resource, relation, subject, n.base, code, got)
	}
	return token
}

// eventually polls the check on n until it answers want, at most clusterLag,
// then asks 10 more times: once the node has caught up it never answers the
// old value again. It returns how many answers still had the old value.
func eventually(t *testing.T, n *trellisProc, resource, permission, subject string, want bool) (old int) {
	t.Helper()
	start := time.Now()
	for ; clusterCheck(t, n, resource, permission, subject, "").allowed != want; old++ {
		if time.Since(start) > clusterLag {
			t.Fatalf("%s#%s@%s on %s: still allowed=%v after %v", resource, permission, subject, n.base, !want, clusterLag)
		}
		time.Sleep(5 * time.Millisecond) // polling the other node's Watch; bounded above
	}
	for range 10 {
		if got := clusterCheck(t, n, resource, permission, subject, ""); got.allowed != want {
			t.Fatalf("%s#%s@%s on %s: allowed=%v again after it had caught up (%+v)", resource, permission, subject, n.base, got.allowed, got)
		}
	}
	return old
}

// clusterReadYourWrites grants through w and checks through o with the
// write's token, then revokes through w: w denies at once, o at once with the
// revocation's token although it had the allow cached, and without a token
// once its Watch has caught up, for good.
func clusterReadYourWrites(t *testing.T, w, o *trellisProc, i int) {
	doc, user := fmt.Sprintf("document:cluster-%d", i), fmt.Sprintf("user:cluster-%d", i)
	if clusterCheck(t, o, doc, "view", user, "").allowed { // o now has the denial cached
		t.Fatalf("%s may view %s before any grant", user, doc)
	}
	granted := clusterRelationship(t, w, "touch", doc, "viewer", user)
	if got := clusterCheck(t, o, doc, "view", user, atLeastAsFresh(granted)); !got.allowed {
		t.Fatalf("read-your-writes across nodes: granted through %s, denied on %s with the write's token (%+v)", w.base, o.base, got)
	}
	if got := clusterCheck(t, w, doc, "view", user, ""); !got.allowed {
		t.Fatalf("granted through %s, denied there (%+v)", w.base, got)
	}
	grantLag := eventually(t, o, doc, "view", user, true) // o now has the allow cached
	if got := clusterCheck(t, o, doc, "view", user, ""); !got.allowed || !got.cached {
		t.Logf("the allow on %s was not served from its cache (%+v); the revocation below is then checked uncached", o.base, got)
	}

	revoked := clusterRelationship(t, w, "delete", doc, "viewer", user)
	if got := clusterCheck(t, w, doc, "view", user, ""); got.allowed {
		t.Fatalf("revoked through %s, still allowed there (%+v)", w.base, got)
	}
	if got := clusterCheck(t, o, doc, "view", user, atLeastAsFresh(revoked)); got.allowed {
		t.Fatalf("revoked through %s, allowed on %s with the revocation's token (%+v)", w.base, o.base, got)
	}
	revokeLag := eventually(t, o, doc, "view", user, false)
	t.Logf("through %s; %s without a token answered the old value %d times after the grant, %d after the revocation",
		w.base, o.base, grantLag, revokeLag)
}

// clusterMembershipRevocation: a membership added through node A and removed
// through node B. Directory writes return no token: the other node answers
// at once with fullyConsistent, and without it once its Watch caught up.
func clusterMembershipRevocation(t *testing.T, nodes [2]*trellisProc, rootID string) {
	a, b := nodes[0], nodes[1]
	if code, got := call(t, "POST", a.base+"/v1/users", crashKey, `{"id":"cluster-m","email":"cluster-m@example.com","name":"Cluster M"}`); code != http.StatusCreated {
		t.Fatalf("creating the user: %d %v", code, got)
	}
	resource, member := "organization:"+rootID, "/v1/organizations/"+rootID+"/members/cluster-m"
	if code, got := call(t, "PUT", a.base+member, crashKey, `{"roles":["member"]}`); code != http.StatusCreated {
		t.Fatalf("PUT membership on A: %d %v", code, got)
	}
	if got := clusterCheck(t, b, resource, "access", "user:cluster-m", fullyConsistent); !got.allowed {
		t.Fatalf("membership added on A, denied on B fully consistent (%+v)", got)
	}
	eventually(t, b, resource, "access", "user:cluster-m", true)
	eventually(t, a, resource, "access", "user:cluster-m", true) // both nodes have the allow cached

	if code, got := call(t, "DELETE", b.base+member, crashKey, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE membership on B: %d %v", code, got)
	}
	if code, got := call(t, "GET", a.base+member, crashKey, ""); code != http.StatusNotFound {
		t.Fatalf("membership removed on B, GET on A: %d %v, want 404", code, got)
	}
	if got := clusterCheck(t, a, resource, "access", "user:cluster-m", fullyConsistent); got.allowed {
		t.Fatalf("membership removed on B, allowed on A fully consistent (%+v)", got)
	}
	lagA := eventually(t, a, resource, "access", "user:cluster-m", false)
	lagB := eventually(t, b, resource, "access", "user:cluster-m", false)
	t.Logf("membership removed through B: without a token A still allowed it %d times, B %d times", lagA, lagB)
}

// clusterKills runs writers through both nodes, kills SpiceDB server 2 (node
// B's) with SIGKILL and restarts it, then kills node A and restarts it, and
// checks that no acknowledged write was lost (through each node) and nothing
// is half-applied. The restarted processes belong to top (they outlive t).
func clusterKills(t, top *testing.T, nodes [2]*trellisProc, sdb [2]*trellisProc) (rootID string) {
	a, b := nodes[0], nodes[1]
	rootID = setupTenant(t, a.base)
	la, lb := newWriteLoad(a.base, rootID), newWriteLoad(b.base, rootID)
	la.writers, lb.writers = crashWriters/2, crashWriters/2
	la.run("a")
	lb.run("b")
	loads := []*writeLoad{la, lb}
	defer func() {
		for _, l := range loads {
			l.halt()
		}
	}()
	ackedBy := func(l *writeLoad) int { n, _ := l.counts(); return n }
	pollUntil(t, 30*time.Second, "20 writes acknowledged by each node", func() bool { return ackedBy(la) >= 20 && ackedBy(lb) >= 20 })

	// SpiceDB 2 dies under node B's writes and comes back on the same address.
	before := ackedBy(lb)
	sdb[1].kill()
	if err := sdb[1].start(top); err != nil {
		t.Fatal(err)
	}
	if err := waitSpiceDB(sdb[1]); err != nil {
		t.Fatal(err)
	}
	if err := b.waitReady(readyWithin); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 30*time.Second, "node B acknowledging writes again", func() bool { return ackedBy(lb) >= before+20 })
	lb.mu.Lock()
	failed := 0
	for _, r := range lb.results {
		if r.err != nil || r.status >= 500 {
			failed++
		}
	}
	lb.mu.Unlock()
	t.Logf("SpiceDB 2 killed and back: node B answered %d writes with 503 or not at all meanwhile", failed)

	// Node A dies under its writers (they stop starting requests; those in
	// flight are cut) and restarts on the same address, while B takes writes.
	la.stop.Store(true)
	a.kill()
	la.wg.Wait()
	la.client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	if err := a.start(top); err != nil {
		t.Fatal(err)
	}
	if err := a.waitReady(readyWithin); err != nil {
		t.Fatal(err)
	}
	la2 := newWriteLoad(a.base, rootID)
	la2.writers = crashWriters / 2
	la2.run("a2")
	loads = append(loads, la2)
	before = ackedBy(lb)
	pollUntil(t, 30*time.Second, "both nodes acknowledging writes after the restart", func() bool {
		return ackedBy(la2) >= 20 && ackedBy(lb) >= before+20
	})
	for _, l := range loads {
		l.halt()
	}

	all := mergeLoads(loads...)
	if len(all.broken) > 0 {
		t.Errorf("answers that break the API contract during the load:\n%s", strings.Join(all.broken, "\n"))
	}
	// Every invariant through node A; through node B, that every
	// acknowledged write is in its directory and granted by its graph.
	checkCrashInvariants(t, a, all, 20*time.Second)
	all.mu.Lock()
	for _, s := range lostWrites(t, b.base, all) {
		t.Errorf("lost, seen through node B: %s", s)
	}
	all.mu.Unlock()
	return rootID
}

// mergeLoads is every load's outcomes as one load's (the invariants read them).
func mergeLoads(loads ...*writeLoad) *writeLoad {
	all := newWriteLoad("", loads[0].root)
	for _, l := range loads {
		l.mu.Lock()
		all.orgs = append(all.orgs, l.orgs...)
		all.members = append(all.members, l.members...)
		all.unknownOrgs = append(all.unknownOrgs, l.unknownOrgs...)
		all.unknownMembers = append(all.unknownMembers, l.unknownMembers...)
		all.results = append(all.results, l.results...)
		all.broken = append(all.broken, l.broken...)
		l.mu.Unlock()
	}
	return all
}
