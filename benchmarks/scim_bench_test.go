package benchmarks

// SCIM provisioning throughput over HTTP on PostgreSQL (both the directory
// store and SpiceDB's datastore), as a customer admin's SCIM token: users
// created with POST /Users by `scimWorkers` concurrent clients, then groups
// with their members by POST /Groups, while another tenant's cached checks
// run beside it (their latency is reported before and during provisioning).
//
//	make bench-scim                        # 10,000 users, 500 groups
//	TRELLIS_SCIM_USERS=1000 make bench-scim
//	TRELLIS_SCIM_BULK=0 make bench-scim    # one POST per resource instead of /Bulk
//
// By default the clients send /Bulk requests of TRELLIS_SCIM_BULK operations
// (100; groups: TRELLIS_SCIM_BULK/20 at a time, so each request carries about
// as many memberships as users), each one directory operation. A tracer on
// the directory store's pool reports its statements and round trips per user
// and per group (roundtrips/user, statements/user, …).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/postgres"
)

const (
	scimBenchKey = "bench-admin-key"
	scimWorkers  = 4
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type scimClient struct {
	b   *testing.B
	url string
	c   *http.Client
}

func (c scimClient) do(key, method, path string, body any, want int) map[string]any {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.c.Do(req)
	if err != nil {
		c.b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.b.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, out)
	}
	m := map[string]any{}
	_ = json.Unmarshal(out, &m)
	return m
}

func BenchmarkSCIMProvisionPostgres(b *testing.B) {
	users, groups := envInt("TRELLIS_SCIM_USERS", 10000), envInt("TRELLIS_SCIM_GROUPS", 500)
	bulk := 100
	if v, err := strconv.Atoi(os.Getenv("TRELLIS_SCIM_BULK")); err == nil && v >= 0 {
		bulk = v
	}
	ctx := context.Background()
	srv := startPostgres(b)
	eng, _ := postgresEngine(b, srv)
	cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 100000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cached.Close() })
	storeURL := srv.NewDatabase(b)
	if err := postgres.Migrate(ctx, storeURL); err != nil {
		b.Fatal(err)
	}
	poolCfg, err := pgxpool.ParseConfig(storeURL)
	if err != nil {
		b.Fatal(err)
	}
	sql := &sqlCounts{}
	poolCfg.ConnConfig.Tracer = sql // counts the directory store's statements and round trips
	st, err := postgres.OpenConfig(ctx, poolCfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: "http://bench"})
	if err != nil {
		b.Fatal(err)
	}
	dir, err := directory.New(directory.Deps{Store: st, Graph: cached,
		Signer: func(_ context.Context, c directory.AccessClaims) (string, time.Time, error) {
			return signer.Issue(federation.AccessClaims{Subject: c.User, Organization: c.Org, TTL: c.TTL})
		}}, directory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(api.New(api.Deps{Engine: cached, Schemas: schema.NewManager(cached), Directory: dir, Tokens: signer, AdminKey: scimBenchKey}))
	b.Cleanup(hs.Close)
	c := scimClient{b: b, url: hs.URL, c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}

	// the provisioned tenant, its admin and the admin's SCIM token
	c.do(scimBenchKey, "POST", "/v1/organizations", map[string]any{"name": "Acme", "slug": "acme"}, 201)
	c.do(scimBenchKey, "POST", "/v1/organizations/acme/domains", map[string]any{"domain": "acme.example"}, 201)
	c.do(scimBenchKey, "POST", "/v1/organizations/acme/domains/acme.example/verify", map[string]any{"method": "manual", "reason": "bench"}, 200)
	admin := c.do(scimBenchKey, "POST", "/v1/users", map[string]any{"email": "root@acme.example"}, 201)["id"].(string)
	c.do(scimBenchKey, "PUT", "/v1/organizations/acme/members/"+admin, map[string]any{"roles": []string{"admin"}}, 201)
	adminTok := c.do(scimBenchKey, "POST", "/v1/tokens", map[string]any{"subject": "user:" + admin}, 201)["accessToken"].(string)
	tok := c.do(adminTok, "POST", "/v1/organizations/acme/scim/tokens", map[string]any{"name": "bench"}, 201)["token"].(string)

	// the other tenant, whose checks run beside provisioning
	other := c.do(scimBenchKey, "POST", "/v1/organizations", map[string]any{"name": "Other", "slug": "other"}, 201)["id"].(string)
	var checkers []string
	for i := range 50 {
		u := c.do(scimBenchKey, "POST", "/v1/users", map[string]any{"email": fmt.Sprintf("o%d@other.example", i)}, 201)["id"].(string)
		c.do(scimBenchKey, "PUT", "/v1/organizations/other/members/"+u, map[string]any{"roles": []string{"member"}}, 201)
		checkers = append(checkers, u)
	}
	if _, err := cached.WriteRelationships(ctx, []engine.RelationshipUpdate{{Operation: engine.OpTouch, Relationship: engine.Relationship{
		Resource: engine.ObjectRef{Type: "document", ID: "other-doc"}, Relation: "org", Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "organization", ID: other}}}}}); err != nil {
		b.Fatal(err)
	}
	checkOnce := func(i int) time.Duration {
		start := time.Now()
		out := c.do(scimBenchKey, "POST", "/v1/check", map[string]any{"resource": "document:other-doc", "permission": "view", "subject": "user:" + checkers[i%len(checkers)]}, 200)
		if out["allowed"] != true {
			b.Fatalf("other tenant's check denied: %v", out)
		}
		return time.Since(start)
	}
	for i := range len(checkers) { // warm the cache
		checkOnce(i)
	}
	quantiles := func(d []time.Duration) (time.Duration, time.Duration) {
		if len(d) == 0 {
			return 0, 0
		}
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2], d[len(d)*99/100]
	}
	var before []time.Duration
	for i := range 2000 {
		before = append(before, checkOnce(i))
	}
	p50b, p99b := quantiles(before)

	// checks beside provisioning, one client
	stop := make(chan struct{})
	var duringMu sync.Mutex
	var during []time.Duration
	var checks sync.WaitGroup
	checks.Add(1)
	go func() {
		defer checks.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := checkOnce(i)
			duringMu.Lock()
			during = append(during, d)
			duringMu.Unlock()
		}
	}()

	b.ResetTimer()
	sqlStart := sql.snapshot()
	cacheStart := cached.Stats()
	ids := make([]string, users)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	userDoc := func(i int) map[string]any {
		return map[string]any{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": fmt.Sprintf("u%d@acme.example", i),
			"externalId": fmt.Sprintf("ext-%d", i), "name": map[string]any{"givenName": "U", "familyName": strconv.Itoa(i)},
			"emails": []any{map[string]any{"type": "work", "primary": true, "value": fmt.Sprintf("u%d@acme.example", i)}}, "active": true,
		}
	}
	for range scimWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := max(bulk, 1)
			for {
				from := (int(next.Add(1)) - 1) * step
				if from >= users {
					return
				}
				if bulk == 0 {
					ids[from] = c.do(tok, "POST", "/scim/v2/acme/Users", userDoc(from), 201)["id"].(string)
					continue
				}
				to := min(from+step, users)
				var ops []any
				for i := from; i < to; i++ {
					ops = append(ops, map[string]any{"method": "POST", "path": "/Users", "bulkId": strconv.Itoa(i), "data": userDoc(i)})
				}
				for j, r := range bulkOK(c, tok, ops, "201") {
					ids[from+j] = r
				}
			}
		}()
	}
	wg.Wait()
	userTime := time.Since(start)
	userSQL := sql.snapshot().minus(sqlStart)
	sqlStart = sql.snapshot()
	duringMu.Lock()
	userChecks := len(during) // the checks beside the users; the rest are beside the groups
	duringMu.Unlock()
	cacheUsers := cached.Stats()
	start = time.Now()
	next.Store(0)
	per := users / groups
	groupDoc := func(g int) map[string]any {
		var members []any
		for _, id := range ids[g*per : (g+1)*per] {
			members = append(members, map[string]any{"value": id})
		}
		return map[string]any{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": fmt.Sprintf("group-%d", g), "members": members,
		}
	}
	for range scimWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := max(bulk/20, 1)
			for {
				from := (int(next.Add(1)) - 1) * step
				if from >= groups {
					return
				}
				if bulk == 0 {
					c.do(tok, "POST", "/scim/v2/acme/Groups", groupDoc(from), 201)
					continue
				}
				var ops []any
				for g := from; g < min(from+step, groups); g++ {
					ops = append(ops, map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g" + strconv.Itoa(g), "data": groupDoc(g)})
				}
				bulkOK(c, tok, ops, "201")
			}
		}()
	}
	wg.Wait()
	groupTime := time.Since(start)
	groupSQL := sql.snapshot().minus(sqlStart)
	cacheGroups := cached.Stats()
	b.StopTimer()
	close(stop)
	checks.Wait()
	p50d, p99d := quantiles(during)
	p50u, _ := quantiles(during[:userChecks])
	p50g, _ := quantiles(during[userChecks:])
	b.ReportMetric(float64(users)/userTime.Seconds(), "users/s")
	b.ReportMetric(float64(groups)/groupTime.Seconds(), "groups/s")
	b.ReportMetric(float64(users)/groupTime.Seconds(), "memberships/s")
	b.ReportMetric(float64(p50b.Microseconds()), "check-p50-before-µs")
	b.ReportMetric(float64(p99b.Microseconds()), "check-p99-before-µs")
	b.ReportMetric(float64(p50d.Microseconds()), "check-p50-during-µs")
	b.ReportMetric(float64(p99d.Microseconds()), "check-p99-during-µs")
	b.ReportMetric(float64(p50u.Microseconds()), "check-p50-during-users-µs")
	b.ReportMetric(float64(p50g.Microseconds()), "check-p50-during-groups-µs")
	b.ReportMetric(float64(bulk), "ops/bulk")
	b.ReportMetric(float64(userSQL.roundTrips)/float64(users), "roundtrips/user")
	b.ReportMetric(float64(userSQL.statements)/float64(users), "statements/user")
	b.ReportMetric(float64(groupSQL.roundTrips)/float64(groups), "roundtrips/group")
	b.ReportMetric(float64(groupSQL.statements)/float64(groups), "statements/group")
	// the check cache beside each phase: every check that reached it, the other
	// tenant's and the directory's own
	b.Logf("check cache beside the users: %d hits, %d misses, %d evictions, %d epoch bumps; beside the groups: %d hits, %d misses, %d evictions, %d epoch bumps",
		cacheUsers.Hits-cacheStart.Hits, cacheUsers.Misses-cacheStart.Misses, cacheUsers.Evictions-cacheStart.Evictions, cacheUsers.EpochBumps-cacheStart.EpochBumps,
		cacheGroups.Hits-cacheUsers.Hits, cacheGroups.Misses-cacheUsers.Misses, cacheGroups.Evictions-cacheUsers.Evictions, cacheGroups.EpochBumps-cacheUsers.EpochBumps)
	b.Logf("%d users in %v (%.0f/s), %d groups with %d members each in %v; other tenant's checks p50/p99 %v/%v before, %v/%v during (%d checks; p50 %v beside the users, %v beside the groups); store: %d statements in %d round trips for the users, %d in %d for the groups",
		users, userTime.Round(time.Millisecond), float64(users)/userTime.Seconds(), groups, per, groupTime.Round(time.Millisecond), p50b, p99b, p50d, p99d, len(during), p50u, p50g,
		userSQL.statements, userSQL.roundTrips, groupSQL.statements, groupSQL.roundTrips)
}

// sqlCounts is a pgx tracer on the directory store's pool: a query is one
// statement in one round trip, a batch its statements in one round trip
// (requests' own and their sync-status records alike; SpiceDB's datastore has
// a pool of its own, not counted).
type sqlCounts struct{ statements, roundTrips atomic.Int64 }

type sqlSnapshot struct{ statements, roundTrips int64 }

func (c *sqlCounts) snapshot() sqlSnapshot {
	return sqlSnapshot{c.statements.Load(), c.roundTrips.Load()}
}

func (a sqlSnapshot) minus(b sqlSnapshot) sqlSnapshot {
	return sqlSnapshot{a.statements - b.statements, a.roundTrips - b.roundTrips}
}

func (c *sqlCounts) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	return ctx
}

func (c *sqlCounts) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *sqlCounts) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	c.statements.Add(int64(d.Batch.Len()))
	return ctx
}

func (c *sqlCounts) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (c *sqlCounts) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// bulkOK sends ops as one /Bulk request and returns the ids each created,
// failing unless every operation answered want.
func bulkOK(c scimClient, tok string, ops []any, want string) []string {
	out := c.do(tok, "POST", "/scim/v2/acme/Bulk", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"}, "Operations": ops}, 200)
	res, _ := out["Operations"].([]any)
	if len(res) != len(ops) {
		c.b.Fatalf("bulk of %d answered %d results", len(ops), len(res))
	}
	ids := make([]string, len(res))
	for i, r := range res {
		m, _ := r.(map[string]any)
		if m["status"] != want {
			c.b.Fatalf("bulk operation %d: %v", i, m)
		}
		loc, _ := m["location"].(string)
		ids[i] = loc[strings.LastIndexByte(loc, '/')+1:]
	}
	return ids
}
