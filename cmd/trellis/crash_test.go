//go:build linux

package main

// Crash safety (issue 6): `trellis serve` on PostgreSQL, as a real process,
// under concurrent directory writes. One test SIGKILLs it mid-load and
// restarts it; the other takes the database away under load and brings it
// back without restarting Trellis. Both then hold the server to the same
// invariants:
//
//   - lost = 0: every write that was acknowledged (2xx) is in the directory
//     and, at once — the response means "applied to the graph" — in the graph;
//   - half-applied = 0: every organization and membership the directory lists
//     has its tuples in the graph, every organization and membership tuple in
//     the graph is in the directory, and every audit chain verifies and holds
//     exactly one creation event per organization or membership that exists.
//     Writes whose outcome is unknown (no answer, 503) may be present or
//     absent, never half. After a crash or an outage the relay re-applies the
//     entries it left pending, so the graph side is polled (bounded) until it
//     agrees, and the test fails with the diff if it never does.
//
// Why these tests can fail. Writers are serialized by the store's advisory
// lock, so at any instant most of the 8 writers are somewhere between "rows
// committed" and "answered". If the outbox entry were committed in a
// transaction of its own after the rows, it would queue for the lock behind
// the other writers, and a SIGKILL (or an outage) would very likely catch
// some operation between its two commits: its organization would be listed
// by the directory but never reach the graph (no outbox entry to re-apply),
// and the convergence poll would fail naming it. Writing the graph before
// committing the rows would leave parent tuples for organizations the
// directory does not have (the converse check). Answering before the relay
// applied the entry would show up as an acknowledged write missing from the
// graph right after the restart; committing the audit event apart from the
// rows would leave an organization without its create_child event (or an
// event without its organization). A 500, a non-problem 503 or a request
// that hangs past the client timeout during the outage fails the second test.
//
// Linux only: the subprocesses carry Pdeathsig so that a test binary killed
// mid-test does not leak a Trellis server.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/store/pgtest"
)

const (
	crashWriters  = 8                 // concurrent client goroutines
	crashUsers    = 64                // users the writers put into organizations
	crashKey      = "crash-admin-key" // the provider admin key
	clientTimeout = 10 * time.Second  // no request may take longer, outage or not
	readyWithin   = 45 * time.Second  // start-up: migrations, embedded SpiceDB, schema
)

// TestCrashMidWriteLosesNothingAcknowledged SIGKILLs `trellis serve` while 8
// clients create organizations and memberships at full speed, restarts it on
// the same database, and checks that nothing acknowledged was lost and that
// nothing is half-applied between the directory, the graph and the audit log.
func TestCrashMidWriteLosesNothingAcknowledged(t *testing.T) {
	pg := pgtest.Start(t) // skips, loudly, when PostgreSQL is not installed
	bin := buildTrellis(t)
	db := pg.NewDatabase(t)
	started := time.Now()
	srv := startTrellis(t, bin, db)
	t.Logf("serve ready in %v at %s", time.Since(started).Round(time.Millisecond), srv.base)
	rootID := setupTenant(t, srv.base)

	l := newWriteLoad(srv.base, rootID)
	loadStart := time.Now()
	l.run("c")
	// Kill after ~1.5 s of load, or sooner once 400 writes were acknowledged;
	// but not before a few were, so that the crash lands in a busy server.
	for deadline := time.Now().Add(20 * time.Second); ; {
		acked, _ := l.counts()
		elapsed := time.Since(loadStart)
		if acked >= 400 || (elapsed >= 1500*time.Millisecond && acked >= 20) {
			break
		}
		if time.Now().After(deadline) {
			l.halt()
			t.Fatalf("only %d writes acknowledged in %v of load:\n%s", acked, elapsed, logTail(srv.out.String()))
		}
		time.Sleep(10 * time.Millisecond) // polling the counters
	}
	l.stop.Store(true) // no writer starts another request; those in flight are cut
	srv.kill()
	killedAfter := time.Since(loadStart)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections() // setupTenant's connections went with the process
	if len(l.broken) > 0 {
		t.Errorf("answers that break the API contract during the load:\n%s", strings.Join(l.broken, "\n"))
	}
	pending := pendingOutbox(t, db)

	restarted := time.Now()
	if err := srv.start(t); err != nil {
		t.Fatal(err)
	}
	if err := srv.waitReady(readyWithin); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %v of load; restarted and ready in %v (%d outbox entries were pending after the kill)",
		killedAfter.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), pending)

	checkCrashInvariants(t, srv, l, 15*time.Second)
}

// TestPostgresRestartDuringLoadRecovers takes PostgreSQL away from a running
// `trellis serve` for ~1.5 s while 8 clients write, then gives it back. The
// outage is what a fast restart of PostgreSQL looks like to its clients: every
// session is terminated by the server (pg_terminate_backend, SQLSTATE 57P01
// "terminating connection due to administrator command") and every new
// connection is refused until it is back. pgtest's server cannot be restarted
// in place (Stop is final, and a new server would get a new port and data
// directory), so Trellis reaches the database through a TCP proxy in this
// test that resets every connection attempt during the outage, and an admin
// connection that bypasses the proxy terminates the sessions.
//
// During the outage every answer must be a 503 problem+json, never a 500 and
// never a hang past the client timeout; afterwards, without restarting
// Trellis, writes succeed again, /readyz is 200, and the invariants of the
// crash test hold.
func TestPostgresRestartDuringLoadRecovers(t *testing.T) {
	pg := pgtest.Start(t) // skips, loudly, when PostgreSQL is not installed
	bin := buildTrellis(t)
	db := pg.NewDatabase(t)
	dbURL, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, dbURL.Host)
	viaProxy := *dbURL
	viaProxy.Host = proxy.addr()
	srv := startTrellis(t, bin, viaProxy.String())
	rootID := setupTenant(t, srv.base)

	admin, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	l := newWriteLoad(srv.base, rootID)
	l.run("r")
	defer l.halt() // on an early Fatal
	pollUntil(t, 20*time.Second, "20 acknowledged writes before the outage", func() bool {
		acked, _ := l.counts()
		return acked >= 20
	})

	// The outage: refuse new connections, terminate every session of the
	// database, cut whatever the proxy still carries.
	downAt := time.Now()
	proxy.refuse()
	var terminated int
	err = admin.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		strings.TrimPrefix(dbURL.Path, "/")).Scan(&terminated)
	if err != nil {
		t.Fatalf("terminating the database's sessions: %v", err)
	}
	proxy.cutAll()
	cutAt := time.Now()
	// Hold it down for 3 s, probing /readyz: it must say 503. (Long enough for
	// some writes to start and end inside it on a loaded machine.)
	probe := &http.Client{Timeout: clientTimeout}
	defer probe.CloseIdleConnections()
	readyz503 := 0
	for time.Since(downAt) < 3*time.Second {
		start := time.Now()
		code, ctype, body, err := rawDo(probe, "GET", srv.base+"/readyz", "")
		switch {
		case err != nil:
			t.Errorf("GET /readyz during the outage: no answer after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case code == http.StatusServiceUnavailable && isProblemJSON(ctype, body, 503):
			readyz503++
		default:
			t.Errorf("GET /readyz during the outage: %d %s %s, want 503 problem+json", code, ctype, body)
		}
		time.Sleep(100 * time.Millisecond) // probe interval
	}
	proxy.restore()
	upAt := time.Now()

	// Without restarting Trellis: a write succeeds again, and /readyz is 200.
	var recoveredIn time.Duration
	for i := 0; ; i++ {
		slug := fmt.Sprintf("probe-%d", i)
		if l.createOrg(slug) != "" {
			recoveredIn = time.Since(upAt)
			break
		}
		if time.Since(upAt) > 20*time.Second {
			t.Fatalf("no write succeeded within 20 s of the database coming back:\n%s", logTail(srv.out.String()))
		}
		time.Sleep(50 * time.Millisecond) // retry interval
	}
	if err := srv.waitReady(20 * time.Second); err != nil {
		t.Fatalf("/readyz after the database came back: %v", err)
	}
	readyIn := time.Since(upAt)
	ackedBefore, _ := l.counts()
	pollUntil(t, 20*time.Second, "writers succeeding after the outage", func() bool {
		acked, _ := l.counts()
		return acked >= ackedBefore+20
	})
	l.halt()

	// Every answer: 2xx or 503 problem+json, none without an answer. Those
	// that started after the cut and ended before the database was back could
	// not reach it: they must all be 503.
	inOutage, unavailable := 0, 0
	for _, r := range l.results {
		if r.err != nil {
			t.Errorf("%s: no answer after %v: %v", r.what, r.end.Sub(r.start).Round(time.Millisecond), r.err)
			continue
		}
		if r.status == http.StatusServiceUnavailable {
			unavailable++
		}
		if r.start.After(cutAt) && r.end.Before(upAt) {
			inOutage++
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("%s during the outage: %d, want 503", r.what, r.status)
			}
		}
	}
	if len(l.broken) > 0 {
		t.Errorf("answers that break the API contract:\n%s", strings.Join(l.broken, "\n"))
	}
	if inOutage == 0 || readyz503 == 0 {
		t.Errorf("the outage was not observed: %d writes and %d readyz probes answered 503 within it", inOutage, readyz503)
	}
	t.Logf("outage %v (%d sessions terminated): %d writes answered within it, %d answered 503 in all, readyz 503 ×%d; "+
		"a write succeeded %v and /readyz was 200 %v after the database came back",
		upAt.Sub(downAt).Round(time.Millisecond), terminated, inOutage, unavailable, readyz503,
		recoveredIn.Round(time.Millisecond), readyIn.Round(time.Millisecond))

	checkCrashInvariants(t, srv, l, 20*time.Second)
}

// ---- the Trellis process

// built is the trellis binary the tests of this package run as processes,
// built once per test binary (linking it is most of the cost) and removed by
// TestMain.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildTrellis builds cmd/trellis from the module root, once for every test
// of the package (the crash tests and the cluster test). It is built with
// -race when the test binary is: then it links from the packages `go test
// -race` has just compiled rather than compiling SpiceDB's dependency tree a
// second time without -race (minutes on a cold cache), and a data race in the
// server under a crash or an outage fails the test.
func buildTrellis(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(gomod))
		if err != nil || mod == "" || mod == os.DevNull {
			built.err = fmt.Errorf("go env GOMOD: %q %v", mod, err)
			return
		}
		if built.dir, err = os.MkdirTemp("", "trellis-test-bin-"); err != nil {
			built.err = err
			return
		}
		built.bin = filepath.Join(built.dir, "trellis")
		args := []string{"build", "-o", built.bin}
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "-race" && s.Value == "true" {
					args = append(args, "-race")
				}
			}
		}
		start := time.Now()
		cmd := exec.Command("go", append(args, "./cmd/trellis")...)
		cmd.Dir = filepath.Dir(mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/trellis: %v\n%s", err, out)
			return
		}
		t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// trellisProc is `trellis serve` on PostgreSQL as a child process.
type trellisProc struct {
	bin    string
	args   []string
	base   string
	out    *syncBuffer // stdout and stderr of every run
	cmd    *exec.Cmd
	exited chan struct{}
}

var errTrellisExited = errors.New("trellis exited")

// startTrellis runs serve on a free port and waits for /readyz; a port taken
// between picking and binding is retried with another.
func startTrellis(t *testing.T, bin, dbURL string) *trellisProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		p := &trellisProc{bin: bin, base: "http://" + addr, out: &syncBuffer{}, args: []string{
			"serve", "--addr", addr, "--datastore", "postgres", "--store", "postgres",
			"--database-url", dbURL, "--migrate", "--admin-key", crashKey, "--cache-entries", "0",
			"--access-history=false", // not under test here: the recorder would only add load
		}}
		if err := p.start(t); err != nil {
			t.Fatal(err)
		}
		err = p.waitReady(readyWithin)
		if err == nil {
			t.Cleanup(func() {
				if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
					t.Errorf("the race detector found a data race in trellis serve")
				}
				if t.Failed() {
					out := p.out.String()
					if lines := errorLines(out); lines != "" {
						t.Logf("trellis logged errors (what any 500 was; the tail below may not reach back to them):\n%s", lines)
					}
					t.Logf("trellis output:\n%s", logTail(out))
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

// start runs the command; it is killed at cleanup, and by the kernel should
// the test binary die first.
func (p *trellisProc) start(t *testing.T) error {
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	for _, kv := range os.Environ() { // the flags say everything; no TRELLIS_* or SPICEDB_* from the caller's shell
		if !strings.HasPrefix(kv, "TRELLIS_") && !strings.HasPrefix(kv, "SPICEDB_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting trellis: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return nil
}

// kill SIGKILLs the process and waits until it is gone.
func (p *trellisProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitReady polls /readyz until it answers 200, the process exits, or within passes.
func (p *trellisProc) waitReady(within time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(within)
	last := "no answer"
	for {
		code, _, body, err := rawDo(client, "GET", p.base+"/readyz", "")
		if err == nil && code == http.StatusOK {
			return nil
		} else if err == nil {
			last = fmt.Sprintf("%d %s", code, body)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("trellis not ready within %v (last /readyz: %s):\n%s", within, last, logTail(p.out.String()))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w before it was ready: %v\n%s", errTrellisExited, p.cmd.ProcessState, logTail(p.out.String()))
		case <-time.After(50 * time.Millisecond): // poll interval
		}
	}
}

func logTail(s string) string {
	const limit = 6 << 10
	if len(s) > limit {
		s = "…" + s[len(s)-limit:]
	}
	return s
}

// errorLines picks out of the server's log, in full, every line that logged
// an error: the API's "internal error" (each 500 logs one, with the error
// behind it) and anything else at level ERROR. A failed test prints them
// besides logTail, whose tail may have scrolled past them.
func errorLines(s string) string {
	const limit = 64 << 10
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.Contains(line, "level=ERROR") && !strings.Contains(line, "internal error") {
			continue
		}
		if b.Len()+len(line) > limit {
			b.WriteString("… (more lines left out)\n")
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

// rawDo is one request that reports, rather than fails on, a missing answer.
func rawDo(client *http.Client, method, url, body string) (code int, ctype string, raw []byte, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+crashKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	if err != nil { // a status line without its body is no answer
		return 0, "", nil, fmt.Errorf("reading the %d answer: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), raw, nil
}

// isProblemJSON reports whether an answer is an RFC 9457 problem with status.
func isProblemJSON(ctype string, body []byte, status int) bool {
	var p struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	return strings.HasPrefix(ctype, "application/problem+json") && json.Unmarshal(body, &p) == nil &&
		p.Status == status && p.Code != ""
}

// setupTenant creates the top-level organization the load writes under, its
// admin "boss", and the users u00…u63; it returns the organization's id.
func setupTenant(t *testing.T, base string) string {
	t.Helper()
	code, org := call(t, "POST", base+"/v1/organizations", crashKey, `{"name":"Crash Root","slug":"crash-root"}`)
	if code != http.StatusCreated {
		t.Fatalf("creating the top-level organization: %d %v", code, org)
	}
	rootID, _ := org["id"].(string)
	users := []string{"boss"}
	for i := range crashUsers {
		users = append(users, loadUser(i))
	}
	for _, u := range users {
		if code, got := call(t, "POST", base+"/v1/users", crashKey,
			fmt.Sprintf(`{"id":%q,"email":"%s@crash.example","name":"User %s"}`, u, u, u)); code != http.StatusCreated {
			t.Fatalf("creating user %s: %d %v", u, code, got)
		}
	}
	if code, got := call(t, "PUT", base+"/v1/organizations/"+rootID+"/members/boss", crashKey, `{"roles":["admin"]}`); code != http.StatusCreated {
		t.Fatalf("making boss an admin: %d %v", code, got)
	}
	return rootID
}

func loadUser(i int) string { return fmt.Sprintf("u%02d", i) }

// pendingOutbox counts the outbox entries not yet applied, straight from the
// database (a figure for the log; the invariants do not depend on it).
func pendingOutbox(t *testing.T, db string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Logf("counting pending outbox entries: %v", err)
		return -1
	}
	defer conn.Close(ctx)
	n := -1
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE applied_at IS NULL`).Scan(&n); err != nil {
		t.Logf("counting pending outbox entries: %v", err)
	}
	return n
}

func pollUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// ---- the load

type ackOrg struct{ slug, id string }

type memberKey struct{ org, user string }

type ackMember struct {
	memberKey
	roles []string
}

// writeResult is one write as the client saw it.
type writeResult struct {
	what       string
	start, end time.Time
	status     int   // 0: no answer
	err        error // why there is no answer
}

// writeLoad is the writers and what they saw.
type writeLoad struct {
	base, root string
	writers    int // concurrent writers (crashWriters)
	client     *http.Client
	stop       atomic.Bool
	wg         sync.WaitGroup

	mu             sync.Mutex
	orgs           []ackOrg    // acknowledged organization creations
	members        []ackMember // acknowledged membership PUTs
	unknownOrgs    []string    // slugs of creations without a definite answer
	unknownMembers []memberKey // PUTs without a definite answer
	results        []writeResult
	broken         []string // answers the contract does not allow
}

func newWriteLoad(base, root string) *writeLoad {
	return &writeLoad{base: base, root: root, writers: crashWriters, client: &http.Client{
		Timeout:   clientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * crashWriters},
	}}
}

// run starts the writers; each creates an organization under the top-level
// one, then puts a user into it as member or admin, until stop.
func (l *writeLoad) run(prefix string) {
	for w := range l.writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; !l.stop.Load(); i++ {
				id := l.createOrg(fmt.Sprintf("%s-%d-%d", prefix, w, i))
				if id == "" || l.stop.Load() {
					continue
				}
				roles := []string{"member"}
				if i%2 == 1 {
					roles = []string{"admin"}
				}
				l.putMember(memberKey{id, loadUser((w*crashUsers/crashWriters + i) % crashUsers)}, roles)
			}
		}()
	}
}

// halt stops the writers and waits for them.
func (l *writeLoad) halt() {
	l.stop.Store(true)
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

func (l *writeLoad) counts() (acked, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.orgs) + len(l.members), len(l.unknownOrgs) + len(l.unknownMembers)
}

// createOrg returns the new organization's id when acknowledged.
func (l *writeLoad) createOrg(slug string) string {
	body, _ := json.Marshal(map[string]string{"name": "Load " + slug, "slug": slug, "parent": l.root})
	r, raw := l.do("POST", "/v1/organizations", string(body))
	var org struct {
		ID string `json:"id"`
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.classify(r, raw) {
	case outcomeAcked:
		if json.Unmarshal(raw, &org) != nil || org.ID == "" {
			l.broken = append(l.broken, fmt.Sprintf("%s: %d without an id: %s", r.what, r.status, raw))
			return ""
		}
		l.orgs = append(l.orgs, ackOrg{slug, org.ID})
	case outcomeUnknown:
		l.unknownOrgs = append(l.unknownOrgs, slug)
	}
	return org.ID
}

func (l *writeLoad) putMember(k memberKey, roles []string) {
	body, _ := json.Marshal(map[string][]string{"roles": roles})
	r, raw := l.do("PUT", "/v1/organizations/"+k.org+"/members/"+k.user, string(body))
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.classify(r, raw) {
	case outcomeAcked:
		l.members = append(l.members, ackMember{k, roles})
	case outcomeUnknown:
		l.unknownMembers = append(l.unknownMembers, k)
	}
}

func (l *writeLoad) do(method, path, body string) (writeResult, []byte) {
	r := writeResult{what: method + " " + path, start: time.Now()}
	code, ctype, raw, err := rawDo(l.client, method, l.base+path, body)
	r.end, r.status, r.err = time.Now(), code, err
	if code == http.StatusServiceUnavailable && !isProblemJSON(ctype, raw, code) {
		l.mu.Lock()
		l.broken = append(l.broken, fmt.Sprintf("%s: 503 that is not problem+json: %s %s", r.what, ctype, raw))
		l.mu.Unlock()
	}
	return r, raw
}

type writeOutcome int

const (
	outcomeAcked   writeOutcome = iota // 2xx: committed and applied
	outcomeUnknown                     // no answer or 5xx: committed or not
	outcomeRefused                     // 4xx: nothing written, and nothing should have been refused
)

// classify records r; l.mu is held.
func (l *writeLoad) classify(r writeResult, raw []byte) writeOutcome {
	l.results = append(l.results, r)
	switch {
	case r.err != nil:
		return outcomeUnknown
	case r.status >= 200 && r.status < 300:
		return outcomeAcked
	case r.status >= 500:
		if r.status != http.StatusServiceUnavailable {
			l.broken = append(l.broken, fmt.Sprintf("%s: %d %s", r.what, r.status, raw))
		}
		return outcomeUnknown
	}
	l.broken = append(l.broken, fmt.Sprintf("%s: %d %s", r.what, r.status, raw))
	return outcomeRefused
}

// ---- the invariants

// checkCrashInvariants verifies, after a crash or an outage, that nothing
// acknowledged was lost (checked at once) and that nothing is half-applied
// (polled until the relay has re-applied what it left pending, at most
// converge), then the audit chains, and logs the figures.
func checkCrashInvariants(t *testing.T, srv *trellisProc, l *writeLoad, converge time.Duration) {
	t.Helper()
	base := srv.base
	l.mu.Lock()
	defer l.mu.Unlock()

	// (a) Acknowledged means in the directory and in the graph, now.
	lost := lostWrites(t, base, l)
	for _, s := range lost {
		t.Errorf("lost: %s", s)
	}

	// (b) Nothing half-applied: directory and graph agree, once the relay
	// re-applied what the crash or the outage left pending.
	convergeStart := time.Now()
	var snap *crashSnapshot
	var half []string
	for deadline := time.Now().Add(converge); ; {
		snap = takeCrashSnapshot(t, base)
		if half = snap.diff(t, base, l.root); len(half) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // poll interval: the relay retries every 5 s or when kicked
	}
	converged := time.Since(convergeStart)
	for _, s := range half {
		t.Errorf("half-applied after %v: %s", converge, s)
	}

	// (c) Every chain verifies and records exactly what exists.
	auditProblems := snap.audit(t, base, l.root)
	for _, s := range auditProblems {
		t.Errorf("audit: %s", s)
	}

	// The unknown-outcome writes: present or absent, never half (checked above).
	unknownPresent := 0
	for _, slug := range l.unknownOrgs {
		if _, ok := snap.bySlug[slug]; ok {
			unknownPresent++
		}
	}
	for _, k := range l.unknownMembers {
		if _, ok := snap.members[k]; ok {
			unknownPresent++
		}
	}
	unknown := len(l.unknownOrgs) + len(l.unknownMembers)
	t.Logf("acknowledged writes: %d (%d organizations, %d memberships); unknown-outcome writes: %d (%d present, %d absent); "+
		"lost: %d; half-applied: %d (+%d audit); graph agreed after %v; directory: %d organizations, %d memberships",
		len(l.orgs)+len(l.members), len(l.orgs), len(l.members), unknown, unknownPresent, unknown-unknownPresent,
		len(lost), len(half), len(auditProblems), converged.Round(time.Millisecond), len(snap.orgs), len(snap.members))
}

// lostWrites lists the acknowledged writes of l (l.mu held) that the
// directory behind base does not have or the graph does not grant, now.
func lostWrites(t *testing.T, base string, l *writeLoad) []string {
	t.Helper()
	var lost []string
	var checks []bulkItem
	for _, o := range l.orgs {
		code, got := call(t, "GET", base+"/v1/organizations/"+o.slug, crashKey, "")
		if code != http.StatusOK || got["id"] != o.id {
			lost = append(lost, fmt.Sprintf("organization %s (%s): GET %d %v", o.slug, o.id, code, got))
		}
		checks = append(checks, bulkItem{"organization:" + o.id, "manage", "user:boss"})
	}
	for _, m := range l.members {
		code, got := call(t, "GET", base+"/v1/organizations/"+m.org+"/members/"+m.user, crashKey, "")
		var roles []string
		remarshal(got, &struct {
			Roles *[]string `json:"roles"`
		}{&roles})
		if code != http.StatusOK || !sameRoles(roles, m.roles) {
			lost = append(lost, fmt.Sprintf("membership %s in %s %v: GET %d %v", m.user, m.org, m.roles, code, got))
		}
		checks = append(checks, bulkItem{"organization:" + m.org, "access", "user:" + m.user})
		if slices.Contains(m.roles, "admin") {
			checks = append(checks, bulkItem{"organization:" + m.org, "manage", "user:" + m.user})
		}
	}
	for _, c := range deniedChecks(t, base, checks) {
		lost = append(lost, "acknowledged, but the graph denies "+c)
	}
	return lost
}

type bulkItem struct{ resource, permission, subject string }

func (c bulkItem) String() string { return c.resource + "#" + c.permission + "@" + c.subject }

// deniedChecks runs the checks fully consistently and returns those denied.
func deniedChecks(t *testing.T, base string, items []bulkItem) []string {
	t.Helper()
	var denied []string
	for len(items) > 0 {
		n := min(len(items), 1000)
		var req struct {
			Items       []map[string]string `json:"items"`
			Consistency map[string]bool     `json:"consistency"`
		}
		req.Consistency = map[string]bool{"fullyConsistent": true}
		for _, c := range items[:n] {
			req.Items = append(req.Items, map[string]string{"resource": c.resource, "permission": c.permission, "subject": c.subject})
		}
		body, _ := json.Marshal(req)
		code, got := call(t, "POST", base+"/v1/check/bulk", crashKey, string(body))
		var res struct {
			Results []struct {
				Allowed bool `json:"allowed"`
			} `json:"results"`
		}
		remarshal(got, &res)
		if code != http.StatusOK || len(res.Results) != n {
			t.Fatalf("check/bulk: %d %v", code, got)
		}
		for i, r := range res.Results {
			if !r.Allowed {
				denied = append(denied, items[i].String())
			}
		}
		items = items[n:]
	}
	return denied
}

// remarshal re-decodes one of call's answers into a typed value.
func remarshal(m map[string]any, v any) {
	raw, _ := json.Marshal(m)
	_ = json.Unmarshal(raw, v)
}

func sameRoles(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

type dirOrg struct {
	ID     string  `json:"id"`
	Slug   string  `json:"slug"`
	Parent *string `json:"parent"`
}

type dirMember struct {
	Roles  []string `json:"roles"`
	Status string   `json:"status"`
}

// crashSnapshot is the directory and the graph as the API shows them.
type crashSnapshot struct {
	orgs     map[string]dirOrg // by id
	bySlug   map[string]string
	members  map[memberKey]dirMember
	parent   map[string]string // graph: organization → parent
	platform map[string]bool   // graph: organizations under the platform
	gMember  map[memberKey]bool
	gAdmin   map[memberKey]bool
}

func takeCrashSnapshot(t *testing.T, base string) *crashSnapshot {
	t.Helper()
	s := &crashSnapshot{orgs: map[string]dirOrg{}, bySlug: map[string]string{}, members: map[memberKey]dirMember{},
		parent: map[string]string{}, platform: map[string]bool{}, gMember: map[memberKey]bool{}, gAdmin: map[memberKey]bool{}}
	for cursor := ""; ; {
		code, got := call(t, "GET", base+"/v1/organizations?pageSize=1000&cursor="+url.QueryEscape(cursor), crashKey, "")
		var page struct {
			Organizations []dirOrg `json:"organizations"`
			NextCursor    string   `json:"nextCursor"`
		}
		remarshal(got, &page)
		if code != http.StatusOK {
			t.Fatalf("listing organizations: %d %v", code, got)
		}
		for _, o := range page.Organizations {
			s.orgs[o.ID], s.bySlug[o.Slug] = o, o.ID
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	for id := range s.orgs {
		for cursor := ""; ; {
			code, got := call(t, "GET", base+"/v1/organizations/"+id+"/members?pageSize=1000&cursor="+url.QueryEscape(cursor), crashKey, "")
			var page struct {
				Members []struct {
					User string `json:"user"`
					dirMember
				} `json:"members"`
				NextCursor string `json:"nextCursor"`
			}
			remarshal(got, &page)
			if code != http.StatusOK {
				t.Fatalf("listing the members of %s: %d %v", id, code, got)
			}
			for _, m := range page.Members {
				s.members[memberKey{id, m.User}] = m.dirMember
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	for _, relation := range []string{"parent", "platform", "member", "admin"} {
		for _, r := range readTuples(t, base, "organization", relation) {
			org := strings.TrimPrefix(r.Resource, "organization:")
			switch relation {
			case "parent":
				s.parent[org] = strings.TrimPrefix(r.Subject, "organization:")
			case "platform":
				s.platform[org] = true
			case "member":
				s.gMember[memberKey{org, strings.TrimPrefix(r.Subject, "user:")}] = true
			case "admin":
				s.gAdmin[memberKey{org, strings.TrimPrefix(r.Subject, "user:")}] = true
			}
		}
	}
	return s
}

type graphTuple struct{ Resource, Relation, Subject string }

func readTuples(t *testing.T, base, resourceType, relation string) []graphTuple {
	t.Helper()
	var out []graphTuple
	for cursor := ""; ; {
		body, _ := json.Marshal(map[string]any{
			"filter":      map[string]string{"resourceType": resourceType, "relation": relation},
			"consistency": map[string]bool{"fullyConsistent": true}, "pageSize": 1000, "cursor": cursor,
		})
		code, got := call(t, "POST", base+"/v1/relationships/read", crashKey, string(body))
		var page struct {
			Relationships []graphTuple `json:"relationships"`
			NextCursor    *string      `json:"nextCursor"`
		}
		remarshal(got, &page)
		if code != http.StatusOK {
			t.Fatalf("reading %s#%s: %d %v", resourceType, relation, code, got)
		}
		out = append(out, page.Relationships...)
		if page.NextCursor == nil || *page.NextCursor == "" {
			return out
		}
		cursor = *page.NextCursor
	}
}

// diff lists every disagreement between the directory and the graph.
func (s *crashSnapshot) diff(t *testing.T, base, root string) []string {
	t.Helper()
	var out []string
	var checks []bulkItem
	for id, o := range s.orgs {
		switch {
		case o.Parent == nil && !s.platform[id]:
			out = append(out, fmt.Sprintf("top-level organization %s (%s) has no platform tuple in the graph", o.Slug, id))
		case o.Parent != nil && s.parent[id] != *o.Parent:
			out = append(out, fmt.Sprintf("organization %s (%s) has parent %s in the directory, %q in the graph", o.Slug, id, *o.Parent, s.parent[id]))
		}
		checks = append(checks, bulkItem{"organization:" + id, "manage", "user:boss"})
	}
	for id, p := range s.parent {
		if o, ok := s.orgs[id]; !ok || o.Parent == nil {
			out = append(out, fmt.Sprintf("graph has organization:%s#parent@organization:%s, the directory has no such organization", id, p))
		}
	}
	for id := range s.platform {
		if o, ok := s.orgs[id]; !ok || o.Parent != nil {
			out = append(out, fmt.Sprintf("graph has organization:%s#platform, the directory has no such top-level organization", id))
		}
	}
	for k, m := range s.members {
		active := m.Status == "active"
		admin := active && slices.Contains(m.Roles, "admin")
		if s.gMember[k] != active {
			out = append(out, fmt.Sprintf("membership %s in %s (%s %v): member tuple in graph = %v", k.user, k.org, m.Status, m.Roles, s.gMember[k]))
		}
		if s.gAdmin[k] != admin {
			out = append(out, fmt.Sprintf("membership %s in %s (%s %v): admin tuple in graph = %v", k.user, k.org, m.Status, m.Roles, s.gAdmin[k]))
		}
		if active {
			checks = append(checks, bulkItem{"organization:" + k.org, "access", "user:" + k.user})
		}
		if admin {
			checks = append(checks, bulkItem{"organization:" + k.org, "manage", "user:" + k.user})
		}
	}
	for relation, g := range map[string]map[memberKey]bool{"member": s.gMember, "admin": s.gAdmin} {
		for k := range g {
			if _, ok := s.members[k]; !ok {
				out = append(out, fmt.Sprintf("graph has organization:%s#%s@user:%s, the directory no such membership", k.org, relation, k.user))
			}
		}
	}
	if _, ok := s.orgs[root]; !ok {
		out = append(out, "the top-level organization is gone")
	}
	for _, c := range deniedChecks(t, base, checks) {
		out = append(out, "the directory has it, the graph denies "+c)
	}
	slices.Sort(out)
	return out
}

// audit verifies every organization's chain and matches its creation events
// to what exists: the top-level chain holds one organization.create_child
// per child, each child's chain one organization.create and one member.add
// per membership.
func (s *crashSnapshot) audit(t *testing.T, base, root string) []string {
	t.Helper()
	var out []string
	client := &http.Client{Timeout: clientTimeout}
	defer client.CloseIdleConnections()
	for id, o := range s.orgs {
		code, got := call(t, "GET", base+"/v1/organizations/"+id+"/audit/verify", crashKey, "")
		if code != http.StatusOK || got["valid"] != true {
			out = append(out, fmt.Sprintf("chain of %s (%s) does not verify: %d %v", o.Slug, id, code, got))
		}
		code, _, raw, err := rawDo(client, "GET", base+"/v1/organizations/"+id+"/audit/export", "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("exporting the chain of %s: %d %v %s", id, code, err, raw)
		}
		count := map[string]int{} // action + " " + target → events
		events := 0
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for ; sc.Scan(); events++ {
			var ev struct{ Action, Target string }
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("chain of %s: %v: %s", id, err, sc.Bytes())
			}
			count[ev.Action+" "+ev.Target]++
		}
		want := map[string]int{"organization.create organization:" + id: 1}
		for k := range s.members {
			if k.org == id {
				want["member.add user:"+k.user] = 1
			}
		}
		for cid, c := range s.orgs {
			if c.Parent != nil && *c.Parent == id {
				want["organization.create_child organization:"+cid] = 1
			}
		}
		for k, n := range count {
			verb := strings.Fields(k)[0]
			if verb != "organization.create" && verb != "organization.create_child" && verb != "member.add" {
				continue // nothing else is written here
			}
			if want[k] != n {
				out = append(out, fmt.Sprintf("chain of %s (%s) holds %d × %q, want %d", o.Slug, id, n, k, want[k]))
			}
		}
		for k, n := range want {
			if count[k] == 0 {
				out = append(out, fmt.Sprintf("chain of %s (%s) lacks %q (want %d)", o.Slug, id, k, n))
			}
		}
		if id == root {
			children := 0
			for k, n := range count {
				if strings.HasPrefix(k, "organization.create_child ") {
					children += n
				}
			}
			t.Logf("top-level chain: %d events, %d organization.create_child", events, children)
		}
	}
	slices.Sort(out)
	return out
}

// ---- the database outage

// dbProxy forwards TCP connections to PostgreSQL; refuse, cutAll and restore
// take the database away from its clients and give it back.
type dbProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func startDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.refuse()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *dbProxy) addr() string { return p.ln.Addr().String() }

func (p *dbProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *dbProxy) pipe(client net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		resetConn(client) // as a stopped server: the connection attempt fails at once
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		resetConn(client)
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		resetConn(client)
		_ = server.Close()
		return
	}
	p.conns[client], p.conns[server] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = server.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// refuse makes every new connection fail.
func (p *dbProxy) refuse() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
}

// cutAll resets every connection the proxy carries.
func (p *dbProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		resetConn(c)
	}
}

// restore accepts connections again.
func (p *dbProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// resetConn closes c with an RST rather than a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
