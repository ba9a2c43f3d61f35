package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

func TestTxLifecycle(t *testing.T) {
	needServer(t)
	conformance.RunTxLifecycle(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestSeqsFromOne(t *testing.T) {
	needServer(t)
	conformance.RunSeqsFromOne(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestTamper(t *testing.T) {
	needServer(t)
	conformance.RunTamper(t, func(t *testing.T) conformance.Tamperer { return newStore(t) })
}

// TestConcurrent's handles are stores over one database, as two Trellis nodes
// would have, so the database's lock serializes the writers, not the process.
func TestConcurrent(t *testing.T) {
	needServer(t)
	conformance.RunConcurrent(t, func(t *testing.T, n int) []store.Store { return newStores(t, n) })
}

// shorthands for the suite's fixtures
var (
	org      = conformance.Org
	mustTx   = conformance.MustTx
	mustRead = conformance.MustRead
	head     = conformance.Head
)

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

// TestASessionEndedMidTransactionIsUnavailable ends the session of a write
// transaction in the middle of fn, as a restart of PostgreSQL does
// (pg_terminate_backend: FATAL 57P01). fn then does what directory's
// organization create did: it looks the slug up, takes the failed lookup for
// "free", and inserts. Every statement from the lookup on, and InTx, must be
// ErrUnavailable (a 503), not an aborted transaction (a 500).
func TestASessionEndedMidTransactionIsUnavailable(t *testing.T) {
	srv := needServer(t)
	url := srv.NewDatabase(t)
	s := openMigrated(t, url)
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	database := url[strings.LastIndex(url, "/")+1:]
	if i := strings.IndexByte(database, '?'); i >= 0 {
		database = database[:i]
	}

	var lookup, insert error
	err = s.InTx(ctx, func(tx store.Tx) error {
		// the session that holds the write lock is this transaction's
		var ended int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(l.pid, 10000))
			FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.datname = $1`, database).Scan(&ended); err != nil || ended != 1 {
			t.Fatalf("ending the transaction's session: %d ended, %v", ended, err)
		}
		_, lookup = tx.GetOrgBySlug(ctx, "acme")
		insert = tx.InsertOrg(ctx, org("org_a1", "acme"))
		return insert
	})
	for name, err := range map[string]error{"the lookup": lookup, "the insert after it": insert, "InTx": err} {
		if !errors.Is(err, trellis.ErrUnavailable) {
			t.Errorf("%s, the session ended by the server: %v; want ErrUnavailable", name, err)
		}
	}
	// and the store recovers: the next transaction gets a new connection
	mustTx(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, org("org_a1", "acme")) })
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
func newStores(t testing.TB, n int) []store.Store {
	t.Helper()
	url := needServer(t).NewDatabase(t)
	out := []store.Store{openMigrated(t, url)}
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
	for name, s := range map[string]store.Store{"same store": holder, "another store": stores[1]} {
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
		{At: conformance.At(0).In(cet).Add(123 * time.Nanosecond), Actor: "usr_a1", Action: "member.put", Organization: "org_a1",
			Details: map[string]any{"count": 3, "ratio": 0.5, "nested": map[string]any{"list": []any{1, "two", true, nil}}}},
		{At: conformance.At(1), Actor: "usr_\xff", Action: "member.delete", Organization: "org_a1"},
		{At: conformance.At(2), Actor: "usr_a1", Action: "organization.update", Organization: "org_a1", Details: map[string]any{}},
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

// ---- transactions

func TestReadThroughAnEndedTxFails(t *testing.T) {
	// the suite's use after end asks only that writes fail (memory lets reads
	// through); here reads fail too, before and after a write
	s := newStore(t)
	var leaked store.Tx
	mustTx(t, s, func(_ context.Context, tx store.Tx) error { leaked = tx; return nil })
	read := func(when string) {
		t.Helper()
		if _, err := leaked.GetOrg(t.Context(), "org_a1"); err == nil || errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("read through an ended transaction %s: %v; want an error other than not found", when, err)
		}
	}
	read("before a write")
	if err := leaked.InsertOrg(t.Context(), org("org_a1", "acme")); err == nil {
		t.Error("write through an ended transaction succeeded")
	}
	read("after a write")
}
