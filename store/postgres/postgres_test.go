package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/conformance"
	"github.com/trellis-iam/trellis/store/pgtest"
	"github.com/trellis-iam/trellis/store/postgres"
)

// requireEnv makes a missing PostgreSQL fail the run instead of skipping it;
// CI sets it, after installing PostgreSQL.
const requireEnv = "TRELLIS_REQUIRE_POSTGRES"

var (
	server     *pgtest.Server // shared by every test; nil when PostgreSQL is not installed
	skipReason string
)

func TestMain(m *testing.M) {
	// goroutines that package init started (SpiceDB's dependencies, via engine) are not ours
	atStart := goleak.IgnoreCurrent()
	var err error
	server, err = pgtest.StartServer()
	switch {
	case errors.Is(err, pgtest.ErrNotInstalled):
		skipReason = err.Error() + "; skipping every PostgreSQL store test"
		banner := strings.Repeat("!", 78)
		fmt.Fprintf(os.Stderr, "%s\n!!! %s\n%s\n", banner, skipReason, banner)
		if os.Getenv(requireEnv) != "" {
			fmt.Fprintf(os.Stderr, "%s is set: PostgreSQL is required\n", requireEnv)
			os.Exit(1)
		}
	case err != nil:
		fmt.Fprintf(os.Stderr, "starting PostgreSQL for the tests: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if server != nil {
		if err := server.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping PostgreSQL: %v\n", err)
			code = max(code, 1)
		}
	}
	if code == 0 {
		if err := goleak.Find(atStart); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needServer(t testing.TB) *pgtest.Server {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	return server
}

// newStore returns an empty store over a fresh, migrated database; both go
// away at the end of t.
func newStore(t testing.TB) *postgres.Store {
	t.Helper()
	url := needServer(t).NewDatabase(t)
	return openMigrated(t, url)
}

func openMigrated(t testing.TB, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	needServer(t)
	conformance.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// ---- fixtures, as in the memory store's tests

var base = time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)

var errBoom = errors.New("boom")

func org(id, slug string) store.Org {
	return store.Org{ID: id, Slug: slug, Name: "Org " + slug, Status: store.StatusActive, CreatedAt: base, UpdatedAt: base}
}

func event(org string, seq int64, actor string) audit.Event {
	return audit.Event{
		Seq: seq, At: base.Add(time.Duration(seq) * time.Minute), Actor: actor, Action: "member.put",
		Organization: org, Details: map[string]any{"via": "api"},
		PrevHash: fmt.Sprintf("h-%s-%d", org, seq-1), Hash: fmt.Sprintf("h-%s-%d", org, seq),
	}
}

func mustTx(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func mustRead(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.Read(t.Context(), func(tx store.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func chainSeqs(t *testing.T, s store.Store, org string) []int64 {
	t.Helper()
	var out []int64
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		chain, err := tx.AuditChain(ctx, org)
		for _, ev := range chain {
			out = append(out, ev.Seq)
		}
		return err
	})
	return out
}

func head(t *testing.T, s store.Store, org string) audit.Head {
	t.Helper()
	var h audit.Head
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		h, err = tx.AuditHead(ctx, org)
		return err
	})
	return h
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) ([]audit.Event, int64) {
	t.Helper()
	var (
		evs  []audit.Event
		next int64
	)
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		evs, next, err = tx.ListAudit(ctx, f)
		return err
	})
	return evs, next
}

// chainFixture appends org_a1 seqs 1..3 with an org_b2 event in between.
func chainFixture(t *testing.T, s store.Store) {
	t.Helper()
	for _, ev := range []audit.Event{event("org_a1", 1, "usr_a1"), event("org_b2", 1, "usr_b2"), event("org_a1", 2, "usr_a1"), event("org_a1", 3, "usr_a1")} {
		mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendAudit(ctx, ev) })
	}
}

// ---- migrations and opening

func TestMigrateIsIdempotent(t *testing.T) {
	url := needServer(t).NewDatabase(t)
	for i := range 3 {
		if err := postgres.Migrate(t.Context(), url); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open after migrating: %v", err)
	}
	defer s.Close()
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	// migrating a database that holds data keeps it
	if err := postgres.Migrate(t.Context(), url); err != nil {
		t.Fatalf("Migrate with data: %v", err)
	}
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetOrg(ctx, "org_a1")
		return err
	})
}

func TestConcurrentMigrations(t *testing.T) {
	// replicas starting together: the session lock makes one wait for the other
	url := needServer(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(t.Context(), url) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	_ = s.Close()
}

func TestOpenRefusesAnUnmigratedDatabase(t *testing.T) {
	url := needServer(t).NewDatabase(t)
	s, err := postgres.Open(t.Context(), url)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open of an unmigrated database succeeded")
	}
	if !strings.Contains(err.Error(), "trellis migrate") || errors.Is(err, trellis.ErrUnavailable) {
		t.Errorf("Open of an unmigrated database: %v; want a plain error that says to run trellis migrate", err)
	}
}

func TestOpenRejectsABadURL(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://user:hunter2@127.0.0.1:1/db?sslmode=bogus")
	if err == nil {
		t.Fatal("Open of a bad URL succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// ---- errors at the driver edge

func TestUnavailable(t *testing.T) {
	// a server of its own, to stop under a live store
	srv := pgtest.Start(t)
	url := srv.NewDatabase(t)
	s := openMigrated(t, url)
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	if err := s.Ready(t.Context()); err != nil {
		t.Fatalf("Ready with the server up: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	checks := map[string]error{
		"Ready": s.Ready(ctx),
		"Read": s.Read(ctx, func(tx store.Tx) error {
			_, err := tx.GetOrg(ctx, "org_a1")
			return err
		}),
		"InTx":    s.InTx(ctx, func(tx store.Tx) error { return tx.InsertOrg(ctx, org("org_b2", "beta")) }),
		"Migrate": postgres.Migrate(ctx, url),
	}
	_, err := postgres.Open(ctx, url)
	checks["Open"] = err
	for name, err := range checks {
		if !errors.Is(err, trellis.ErrUnavailable) {
			t.Errorf("%s with the server stopped: %v; want ErrUnavailable", name, err)
		}
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	s := newStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Ready": s.Ready(t.Context()),
		"Read":  s.Read(t.Context(), func(store.Tx) error { return nil }),
		"InTx":  s.InTx(t.Context(), func(store.Tx) error { return nil }),
	} {
		if !errors.Is(err, trellis.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v; want ErrUnavailable", name, err)
		}
	}
}

// newStores returns n stores over one fresh, migrated database, as n Trellis
// nodes sharing it would have.
func newStores(t testing.TB, n int) []*postgres.Store {
	t.Helper()
	url := needServer(t).NewDatabase(t)
	out := []*postgres.Store{openMigrated(t, url)}
	for range n - 1 {
		s, err := postgres.Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out = append(out, s)
	}
	return out
}

func TestWriterThatCannotGetTheLockInTimeIsUnavailable(t *testing.T) {
	stores := newStores(t, 2)
	holder := stores[0]
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- holder.InTx(context.Background(), func(tx store.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	for name, s := range map[string]*postgres.Store{"same store": holder, "another store": stores[1]} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := s.InTx(ctx, func(tx store.Tx) error {
			t.Errorf("%s: fn ran without the write lock", name)
			return nil
		})
		cancel()
		if !errors.Is(err, trellis.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: InTx past its deadline waiting for the lock: %v; want ErrUnavailable and DeadlineExceeded", name, err)
		}
		// a reader does not wait for the writer
		mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.ListOrgs(ctx, store.OrgFilter{})
			return err
		})
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the lock holder: %v", err)
	}
}

func TestConflictsNameTheKey(t *testing.T) {
	s := newStore(t)
	a := org("org_a1", "acme")
	a.Domains = []store.Domain{{Domain: "acme.example", Verified: true, Token: "t", Method: "dns"}}
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return errors.Join(
			tx.InsertOrg(ctx, a),
			tx.InsertUser(ctx, store.User{ID: "usr_a1", Email: "ada@example.com", Status: store.StatusActive}),
			tx.InsertRole(ctx, store.Role{ID: "role_a1", Org: "org_a1", Key: "auditor"}),
			tx.InsertInvitation(ctx, store.Invitation{ID: "inv_a1", Org: "org_a1", TokenHash: []byte("secret-hash")}),
		)
	})
	b := org("org_b2", "beta")
	b.Domains = a.Domains
	for _, c := range []struct {
		name string
		fn   func(ctx context.Context, tx store.Tx) error
		want string
	}{
		{"slug", func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_c3", "acme")) },
			`conflict: organization slug "acme" is taken`},
		{"org id", func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "other")) },
			`conflict: organization id "org_a1" is taken`},
		{"verified domain", func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, b) },
			`conflict: verified domain "acme.example" is taken`},
		{"email", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertUser(ctx, store.User{ID: "usr_b2", Email: "ada@example.com"})
		}, `conflict: user email "ada@example.com" is taken`},
		{"role key", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertRole(ctx, store.Role{ID: "role_b2", Org: "org_a1", Key: "auditor"})
		}, `conflict: role key (org_a1, auditor) is taken`},
		{"token hash", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertInvitation(ctx, store.Invitation{ID: "inv_b2", Org: "org_a1", TokenHash: []byte("secret-hash")})
		}, `conflict: invitation token hash is taken`},
	} {
		err := s.InTx(t.Context(), func(tx store.Tx) error { return c.fn(t.Context(), tx) })
		if !errors.Is(err, trellis.ErrConflict) || err.Error() != c.want {
			t.Errorf("%s: got %q, want %q (ErrConflict)", c.name, err, c.want)
		}
	}
}

func TestInvalidTextIsAValidationError(t *testing.T) {
	s := newStore(t)
	err := s.InTx(t.Context(), func(tx store.Tx) error { return tx.InsertOrg(t.Context(), org("org_a1", "nul\x00slug")) })
	var ve *trellis.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("a NUL byte in a slug: %v; want a *trellis.ValidationError", err)
	}
}

func TestAFailedStatementAbortsTheTransaction(t *testing.T) {
	s := newStore(t)
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	var later error
	err := s.InTx(t.Context(), func(tx store.Tx) error {
		ctx := t.Context()
		if err := tx.InsertOrg(ctx, org("org_b2", "beta")); err != nil {
			return err
		}
		_ = tx.InsertOrg(ctx, org("org_c3", "acme")) // conflict, ignored
		later = tx.InsertOrg(ctx, org("org_d4", "delta"))
		return nil
	})
	if !errors.Is(err, trellis.ErrConflict) {
		t.Errorf("InTx whose fn ignored a conflict: %v; want the conflict", err)
	}
	if later == nil || errors.Is(later, trellis.ErrConflict) {
		t.Errorf("a write after the failed one: %v; want an error that is not the conflict", later)
	}
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		orgs, err := tx.ListOrgs(ctx, store.OrgFilter{})
		if len(orgs) != 1 {
			t.Errorf("after the aborted transaction: %d orgs, want 1", len(orgs))
		}
		return err
	})
}

// ---- behaviour the conformance suite leaves to each store

func TestOrgQueryIsASubstringNotAPattern(t *testing.T) {
	s := newStore(t)
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		return errors.Join(
			tx.InsertOrg(ctx, org("org_a1", "a_b")),
			tx.InsertOrg(ctx, org("org_b2", "a%b")),
			tx.InsertOrg(ctx, org("org_c3", "axb")),
			tx.InsertOrg(ctx, org("org_d4", `a\b`)),
		)
	})
	for q, want := range map[string]string{"_": "a_b", "%": "a%b", `\`: `a\b`, "A_B": "a_b"} {
		var got []string
		mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
			orgs, err := tx.ListOrgs(ctx, store.OrgFilter{Query: q})
			for _, o := range orgs {
				got = append(got, o.Slug)
			}
			return err
		})
		if len(got) != 1 || got[0] != want {
			t.Errorf("ListOrgs query %q: %q, want [%q]", q, got, want)
		}
	}
}

func TestSlugsSortByteWise(t *testing.T) {
	s := newStore(t)
	slugs := []string{"b", "B", "a", "_x", "Zed", "ä"}
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
		var errs []error
		for i, slug := range slugs {
			errs = append(errs, tx.InsertOrg(ctx, org(fmt.Sprintf("org_%d", i), slug)))
		}
		return errors.Join(errs...)
	})
	var got []string
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		orgs, err := tx.ListOrgs(ctx, store.OrgFilter{})
		for _, o := range orgs {
			got = append(got, o.Slug)
		}
		return err
	})
	if want := []string{"B", "Zed", "_x", "a", "b", "ä"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("slug order %q, want byte order %q", got, want)
	}
}

func TestSealedChainVerifiesAfterARoundTrip(t *testing.T) {
	// what audit.HashOf covers survives the columns: numbers, the time zone,
	// sub-microsecond digits, invalid UTF-8
	s := newStore(t)
	cet := time.FixedZone("CET", 3600)
	evs := []audit.Event{
		{At: base.In(cet).Add(123 * time.Nanosecond), Actor: "usr_a1", Action: "member.put", Organization: "org_a1",
			Details: map[string]any{"count": 3, "ratio": 0.5, "nested": map[string]any{"list": []any{1, "two", true, nil}}}},
		{At: base.Add(time.Minute), Actor: "usr_\xff", Action: "member.delete", Organization: "org_a1"},
		{At: base.Add(2 * time.Minute), Actor: "usr_a1", Action: "organization.update", Organization: "org_a1", Details: map[string]any{}},
	}
	for _, ev := range evs {
		mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
			h, err := tx.AuditHead(ctx, ev.Organization)
			if err != nil {
				return err
			}
			audit.Seal(h, &ev)
			return tx.AppendAudit(ctx, ev)
		})
	}
	var chain []audit.Event
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		chain, err = tx.AuditChain(ctx, "org_a1")
		return err
	})
	if v := audit.Verify(chain, head(t, s, "org_a1")); !v.Valid || v.Events != 3 {
		t.Errorf("Verify after a round trip: %+v", v)
	}
	if n, ok := chain[0].Details["count"].(float64); !ok || n != 3 {
		t.Errorf("a number in details came back as %T %v; want float64 3", chain[0].Details["count"], chain[0].Details["count"])
	}
}

func TestSeqsAndCursorsCountFromOne(t *testing.T) {
	s := newStore(t)
	chainFixture(t, s)
	var cursors []int64
	f := store.AuditFilter{AllOrgs: true, Limit: 1}
	for range 4 {
		_, next := listAudit(t, s, f)
		cursors = append(cursors, next)
		f.Cursor = next
	}
	if fmt.Sprint(cursors) != "[1 2 3 4]" {
		t.Errorf("audit cursors %v, want [1 2 3 4]", cursors)
	}
	var seqs []int64
	for range 3 {
		mustTx(t, s, func(ctx context.Context, tx store.Tx) error {
			seq, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "a"})
			seqs = append(seqs, seq)
			return err
		})
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Errorf("outbox seqs %v, want [1 2 3]", seqs)
	}
}

// ---- test hooks

func TestTamperAudit(t *testing.T) {
	s := newStore(t)
	chainFixture(t, s)
	var kept map[string]any
	err := s.TamperAudit("org_a1", 2, func(ev *audit.Event) {
		ev.Actor = "usr_mallory"
		ev.Details["via"] = "backdoor"
		kept = ev.Details
	})
	if err != nil {
		t.Fatal(err)
	}
	kept["via"] = "edited after the fact" // mutate's leftovers do not alias the store

	var chain []audit.Event
	mustRead(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		chain, err = tx.AuditChain(ctx, "org_a1")
		return err
	})
	if len(chain) != 3 || chain[1].Actor != "usr_mallory" || chain[1].Details["via"] != "backdoor" || chain[1].Hash != "h-org_a1-2" {
		t.Errorf("chain after tampering: %+v", chain)
	}
	evs, _ := listAudit(t, s, store.AuditFilter{AllOrgs: true, Actor: "usr_mallory"})
	if len(evs) != 1 || evs[0].Seq != 2 || evs[0].Organization != "org_a1" || evs[0].Details["via"] != "backdoor" {
		t.Errorf("global log after tampering: %+v", evs)
	}
	if h := head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "h-org_a1-3"}) {
		t.Errorf("head moved: %+v", h)
	}
	noop := func(*audit.Event) {}
	if err := s.TamperAudit("org_a1", 9, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown seq: %v", err)
	}
	if err := s.TamperAudit("org_zz", 1, noop); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("TamperAudit unknown org: %v", err)
	}

	// moving an event to another organization keeps it in its chain, where Verify sees it
	if err := s.TamperAudit("org_a1", 3, func(ev *audit.Event) { ev.Organization = "org_b2" }); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 2 3]" {
		t.Errorf("chain after moving an event: %s", got)
	}
	if evs, _ := listAudit(t, s, store.AuditFilter{Org: "org_b2"}); len(evs) != 2 {
		t.Errorf("org_b2's events after the move: %d, want 2", len(evs))
	}
}

func TestDeleteAuditEvent(t *testing.T) {
	s := newStore(t)
	chainFixture(t, s)
	if err := s.DeleteAuditEvent("org_a1", 2); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 3]" {
		t.Errorf("chain after deleting seq 2: %s", got)
	}
	evs, _ := listAudit(t, s, store.AuditFilter{AllOrgs: true})
	var hashes []string
	for _, ev := range evs {
		hashes = append(hashes, ev.Hash)
	}
	if got := fmt.Sprint(hashes); got != "[h-org_a1-1 h-org_b2-1 h-org_a1-3]" {
		t.Errorf("global log after deleting seq 2: %s", got)
	}
	if err := s.DeleteAuditEvent("org_a1", 2); !errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("DeleteAuditEvent twice: %v", err)
	}

	// truncating the tail leaves the head ahead of the chain, for Verify to see
	if err := s.DeleteAuditEvent("org_a1", 3); err != nil {
		t.Fatal(err)
	}
	if h := head(t, s, "org_a1"); h != (audit.Head{Seq: 3, Hash: "h-org_a1-3"}) {
		t.Errorf("head after truncation: %+v", h)
	}
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1]" {
		t.Errorf("chain after truncation: %s", got)
	}
	// appends still follow the head, not the damaged chain
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendAudit(ctx, event("org_a1", 4, "usr_a1")) })
	if got := fmt.Sprint(chainSeqs(t, s, "org_a1")); got != "[1 4]" {
		t.Errorf("chain after a later append: %s", got)
	}
}

// ---- transactions that end badly

// checkRolledBack checks what the failed transactions below leave: org_a1 as seeded and
// nothing else, and a store that still takes writes (the lock was released).
func checkRolledBack(t *testing.T, s store.Store) {
	t.Helper()
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		if o, err := tx.GetOrg(ctx, "org_a1"); err != nil || o.Slug != "acme" {
			t.Errorf("org_a1 after rollback: %+v, %v", o, err)
		}
		if _, err := tx.GetOrgBySlug(ctx, "acme-renamed"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("renamed slug after rollback: %v", err)
		}
		if _, err := tx.GetOrg(ctx, "org_b2"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("org_b2 after rollback: %v", err)
		}
		if h, _ := tx.AuditHead(ctx, "org_a1"); h != (audit.Head{}) {
			t.Errorf("audit head after rollback: %+v", h)
		}
		if p, _ := tx.PendingOutbox(ctx, 0); len(p) != 0 {
			t.Errorf("outbox after rollback: %+v", p)
		}
		return nil
	})
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_b2", "beta")) })
}

// failingWrites writes several rows, each valid; the caller then makes the transaction fail.
func failingWrites(t *testing.T, ctx context.Context, tx store.Tx) {
	t.Helper()
	_, err := tx.AppendOutbox(ctx, store.OutboxEntry{Action: "organization.create"})
	if err := errors.Join(
		tx.InsertOrg(ctx, org("org_b2", "beta")),
		tx.UpdateOrg(ctx, org("org_a1", "acme-renamed")),
		tx.AppendAudit(ctx, event("org_a1", 1, "usr_a1")),
		err,
	); err != nil {
		t.Errorf("writes before the failure: %v", err)
	}
}

func seeded(t *testing.T) *postgres.Store {
	s := newStore(t)
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
	return s
}

func TestPanicInTxRollsBack(t *testing.T) {
	s := seeded(t)
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the closure's panic value", r)
			}
		}()
		_ = s.InTx(t.Context(), func(tx store.Tx) error {
			failingWrites(t, t.Context(), tx)
			panic(errBoom)
		})
		t.Error("InTx returned instead of re-panicking")
	}()
	checkRolledBack(t, s)
}

func TestGoexitInTxRollsBack(t *testing.T) {
	// runtime.Goexit is what t.FailNow does inside a closure
	s := seeded(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.InTx(context.Background(), func(tx store.Tx) error {
			failingWrites(t, context.Background(), tx)
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	checkRolledBack(t, s)
}

func TestContextEndingDuringTxRollsBack(t *testing.T) {
	s := seeded(t)
	ctx, cancel := context.WithCancel(t.Context())
	err := s.InTx(ctx, func(tx store.Tx) error {
		failingWrites(t, ctx, tx)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("InTx whose context ended: %v", err)
	}
	checkRolledBack(t, s)
}

func TestTxUseAfterEnd(t *testing.T) {
	s := newStore(t)
	var leaked store.Tx
	mustTx(t, s, func(_ context.Context, tx store.Tx) error { leaked = tx; return nil })
	if err := leaked.InsertOrg(t.Context(), org("org_a1", "acme")); err == nil {
		t.Error("write through an ended transaction succeeded")
	}
	if _, err := leaked.GetOrg(t.Context(), "org_a1"); err == nil || errors.Is(err, trellis.ErrNotFound) {
		t.Errorf("read through an ended transaction: %v; want an error other than not found", err)
	}
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetOrg(ctx, "org_a1"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("org written through an ended transaction: %v", err)
		}
		return nil
	})
}

// TestConcurrent runs writers and readers at once. Every transaction inserts
// one org, appends one audit event to a shared chain and one outbox entry;
// some then fail. Readers check that the three counts always agree, which
// holds only if transactions are atomic and reads see one snapshot; the chain
// and the outbox seqs must come out gap-free and unique. Writers and readers
// use two stores over one database, as two Trellis nodes would, so the
// database's lock serializes them, not the process. Run with -race.
func TestConcurrent(t *testing.T) {
	const writers, perWriter, readers, perReader = 8, 15, 4, 30
	stores := newStores(t, 2)
	s := stores[0]
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seqOf = map[int64]string{} // committed outbox seq -> its writer's org
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("org_w%d_%d", w, i)
				var seq int64
				err := stores[w%2].InTx(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					h, err := tx.AuditHead(ctx, "org_shared")
					if err != nil {
						return err
					}
					ev := event("org_shared", h.Seq+1, id)
					if err := errors.Join(tx.InsertOrg(ctx, org(id, id)), tx.AppendAudit(ctx, ev)); err != nil {
						return err
					}
					if seq, err = tx.AppendOutbox(ctx, store.OutboxEntry{Action: id}); err != nil {
						return err
					}
					if i%3 == 2 {
						return errBoom
					}
					return nil
				})
				switch {
				case err == nil:
					mu.Lock()
					if other, dup := seqOf[seq]; dup {
						t.Errorf("outbox seq %d committed twice: %s and %s", seq, other, id)
					}
					seqOf[seq] = id
					mu.Unlock()
				case !errors.Is(err, errBoom):
					t.Errorf("writer %d: %v", w, err)
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for range perReader {
				err := stores[r%2].Read(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					orgs, err1 := tx.ListOrgs(ctx, store.OrgFilter{})
					h, err2 := tx.AuditHead(ctx, "org_shared")
					pending, err3 := tx.PendingOutbox(ctx, 0)
					if err := errors.Join(err1, err2, err3); err != nil {
						return err
					}
					if int64(len(orgs)) != h.Seq || len(orgs) != len(pending) {
						t.Errorf("reader saw %d orgs, head %d, %d outbox entries", len(orgs), h.Seq, len(pending))
					}
					return nil
				})
				if err != nil {
					t.Errorf("reader: %v", err)
				}
			}
		})
	}
	wg.Wait()

	want := writers * (perWriter - perWriter/3)
	mustRead(t, s, func(ctx context.Context, tx store.Tx) error {
		orgs, _ := tx.ListOrgs(ctx, store.OrgFilter{})
		chain, _ := tx.AuditChain(ctx, "org_shared")
		pending, _ := tx.PendingOutbox(ctx, 0)
		if len(orgs) != want || len(chain) != want || len(pending) != want || len(seqOf) != want {
			t.Errorf("after the run: %d orgs, %d events, %d outbox entries, %d committed seqs; want %d of each",
				len(orgs), len(chain), len(pending), len(seqOf), want)
		}
		for i, ev := range chain {
			if ev.Seq != int64(i+1) {
				t.Fatalf("chain[%d].Seq = %d: the chain has a gap or a duplicate", i, ev.Seq)
			}
		}
		// the outbox is in commit order: entry i was written by the writer of event i
		for i, e := range pending {
			if i < len(chain) && e.Action != chain[i].Actor {
				t.Fatalf("outbox entry %d (seq %d) is %s's but event %d is %s's: seq order is not commit order",
					i, e.Seq, e.Action, i+1, chain[i].Actor)
			}
			if i > 0 && e.Seq <= pending[i-1].Seq {
				t.Fatalf("outbox seqs out of order: %d after %d", e.Seq, pending[i-1].Seq)
			}
		}
		return nil
	})
}
