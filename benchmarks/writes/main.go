// Command writes measures directory writes over HTTP: membership PUTs, group
// member adds and organization creates, by 1, 8 and 32 concurrent writers,
// on the memory and the PostgreSQL store, through one Trellis node or two
// sharing the store and the engine (embedded SpiceDB, memdb). Each node is
// what `trellis serve` builds (check cache, directory with its relay worker,
// API) behind a real loopback HTTP server; writers are spread over the nodes
// and over 50 organizations. It prints one Markdown row per run: throughput,
// p50/p95/p99 latency, and CPU per acknowledged write of this process (the
// nodes and the writers that drive them) and of PostgreSQL. `make bench-writes` runs it; PostgreSQL is started
// from the system's binaries (store/pgtest).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/benchmarks/proc"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
	"github.com/trellis-iam/trellis/store/pgtest"
	"github.com/trellis-iam/trellis/store/postgres"
)

const adminKey = "bench-admin-key"

var (
	stores   = flag.String("stores", "memory,postgres", "stores to measure")
	nodeList = flag.String("nodes", "1,2", "node counts to measure")
	writers  = flag.String("writers", "1,8,32", "concurrent writer counts")
	ops      = flag.String("ops", "member.put,group.member_add,org.create", "operations to measure")
	duration = flag.Duration("duration", 3*time.Second, "length of each run")
	orgCount = flag.Int("orgs", 50, "organizations")
	perOrg   = flag.Int("users", 40, "users per organization")
	label    = flag.String("label", "", "text for the first column (e.g. the commit)")
	cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of the measured runs (not the setup) to this file")
	count    = flag.Bool("count", false, "also print, per acknowledged write, the SQL statements and round trips (PostgreSQL) and the calls that reached SpiceDB")
)

func main() {
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	engine.LogTo(slog.Default())
	var pg *pgtest.Server
	if strings.Contains(*stores, "postgres") {
		var err error
		if pg, err = pgtest.StartServer(); err != nil {
			fail(err)
		}
		defer pg.Stop()
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fail(err)
		}
		profiling = f
		defer f.Close()
	}
	fmt.Println("| build | store | nodes | operation | writers | writes/s | p50 ms | p95 ms | p99 ms | errors | process CPU µs/write | PostgreSQL CPU µs/write |")
	fmt.Println("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	dbs := 0
	for _, st := range split(*stores) {
		for _, n := range split(*nodeList) {
			nodes := 1
			fmt.Sscan(n, &nodes)
			dbs++
			c := setup(st, nodes, pg, dbs)
			for _, op := range split(*ops) {
				for _, w := range split(*writers) {
					k := 1
					fmt.Sscan(w, &k)
					before := counters.snapshot()
					self, pgPID := os.Getpid(), 0
					if st == "postgres" {
						pgPID = pg.PID()
					}
					cpu0, pg0 := proc.CPUTime(self), proc.TreeCPU(pgPID)
					r := c.run(op, k, *duration)
					perWrite := func(d time.Duration) string {
						if d <= 0 || r.acked == 0 {
							return "–"
						}
						return fmt.Sprintf("%.0f", float64(d.Microseconds())/float64(r.acked))
					}
					fmt.Printf("| %s | %s | %d | %s | %d | %.0f | %.1f | %.1f | %.1f | %d | %s | %s |\n", *label, st, nodes, op, k,
						r.throughput, ms(r.p50), ms(r.p95), ms(r.p99), r.errors,
						perWrite(proc.CPUTime(self)-cpu0), perWrite(proc.TreeCPU(pgPID)-pg0))
					if *count && r.acked > 0 {
						d := counters.snapshot().minus(before)
						n := float64(r.acked)
						fmt.Fprintf(os.Stderr, "count %s %s nodes=%d writers=%d: per write %.1f SQL statements in %.1f round trips (%.1f in transactions: begin/commit included), SpiceDB: %.2f checks, %.2f reads, %.2f writes\n",
							st, op, nodes, k, float64(d.statements)/n, float64(d.roundTrips)/n, float64(d.inTx)/n,
							float64(d.checks)/n, float64(d.reads)/n, float64(d.writes)/n)
					}
				}
			}
			c.close()
		}
	}
}

func split(s string) []string { return strings.Split(s, ",") }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-writes:", err)
	os.Exit(1)
}

// cluster is the nodes of one configuration and the data they write.
type cluster struct {
	urls    []string
	orgs    []string
	groups  []string // one per organization
	users   [][]string
	closers []func()
	created atomic.Int64
}

func setup(kind string, nodes int, pg *pgtest.Server, db int) *cluster {
	ctx := context.Background()
	c := &cluster{}
	embedded, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		fail(err)
	}
	eng := &countingEngine{Engine: embedded}
	c.closers = append(c.closers, func() { _ = embedded.Close() })
	var shared store.Store
	url := ""
	switch kind {
	case "memory":
		shared = memory.New()
	case "postgres":
		admin, err := pgx.Connect(ctx, pg.URL())
		if err != nil {
			fail(err)
		}
		name := fmt.Sprintf("bench_writes_%d_%d", os.Getpid(), db)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			fail(err)
		}
		_ = admin.Close(ctx)
		url = strings.Replace(pg.URL(), "/postgres?", "/"+name+"?", 1)
		if err := postgres.Migrate(ctx, url); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown store %q", kind))
	}
	var first *directory.Service
	for range nodes {
		st := shared
		if st == nil { // each PostgreSQL node has its own pool, as separate processes do
			cfg, err := pgxpool.ParseConfig(url + "&pool_max_conns=16")
			if err != nil {
				fail(err)
			}
			if *count {
				cfg.ConnConfig.Tracer = sqlCounter{}
			}
			pst, err := postgres.OpenConfig(ctx, cfg)
			if err != nil {
				fail(err)
			}
			st = pst
			c.closers = append(c.closers, func() { _ = pst.Close() })
		}
		cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: 100000})
		if err != nil {
			fail(err)
		}
		schemas := schema.NewManager(cached)
		if _, err := schemas.Bootstrap(ctx, ""); err != nil {
			fail(err)
		}
		signer, err := federation.NewSigner(federation.SignerConfig{Issuer: "http://bench.test"})
		if err != nil {
			fail(err)
		}
		dir, err := directory.New(directory.Deps{Store: st, Graph: cached}, directory.Config{})
		if err != nil {
			fail(err)
		}
		if first == nil {
			first = dir
		}
		relayCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); dir.Relay().Run(relayCtx, 5*time.Second) }()
		srv := httptest.NewServer(api.New(api.Deps{Engine: cached, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: cached},
			Directory: dir, Tokens: signer, AdminKey: adminKey}))
		c.urls = append(c.urls, srv.URL)
		c.closers = append(c.closers, func() { srv.Close(); stop(); <-done; cached.Close() })
	}
	p := directory.Provider("bench")
	for i := range *orgCount {
		o, err := first.CreateOrganization(ctx, p, directory.CreateOrg{Name: fmt.Sprintf("Tenant %d", i), Slug: fmt.Sprintf("tenant-%d", i)})
		if err != nil {
			fail(err)
		}
		c.orgs = append(c.orgs, o.ID)
		name := "engineers"
		g, err := first.CreateGroup(ctx, p, o.ID, directory.GroupInput{Name: &name})
		if err != nil {
			fail(err)
		}
		c.groups = append(c.groups, g.ID)
		var users []string
		for j := range *perOrg {
			u, err := first.CreateUser(ctx, p, directory.CreateUser{Email: fmt.Sprintf("u%d@tenant-%d.example", j, i), Name: "U"})
			if err != nil {
				fail(err)
			}
			if _, _, err := first.PutMember(ctx, p, o.ID, u.ID, directory.PutMember{Roles: []string{"member"}}); err != nil {
				fail(err)
			}
			users = append(users, u.ID)
		}
		c.users = append(c.users, users)
	}
	return c
}

func (c *cluster) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

type result struct {
	throughput    float64
	p50, p95, p99 time.Duration
	errors        int
	acked         int
}

// request is the next write of op by writer w.
func (c *cluster) request(op string, rnd *rand.Rand) (method, path string, body []byte) {
	i := rnd.IntN(len(c.orgs))
	org, users := c.orgs[i], c.users[i]
	u := users[rnd.IntN(len(users))]
	switch op {
	case "member.put":
		roles := []string{"member", "admin"}[rnd.IntN(2)]
		return http.MethodPut, "/v1/organizations/" + org + "/members/" + u, []byte(`{"roles":["` + roles + `"]}`)
	case "group.member_add":
		return http.MethodPut, "/v1/organizations/" + org + "/groups/" + c.groups[i] + "/members/user:" + u, nil
	case "org.create":
		n := c.created.Add(1)
		return http.MethodPost, "/v1/organizations", fmt.Appendf(nil, `{"name":"Child %d","slug":"child-%d-%d","parent":%q}`, n, os.Getpid(), n, org)
	}
	fail(fmt.Errorf("unknown operation %q", op))
	return
}

func (c *cluster) run(op string, writers int, d time.Duration) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errors    int
		wg        sync.WaitGroup
	)
	if profiling != nil {
		if err := pprof.StartCPUProfile(profiling); err == nil {
			defer pprof.StopCPUProfile()
		}
		profiling = nil // one run per profile
	}
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			url := c.urls[w%len(c.urls)]
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				method, path, body := c.request(op, rnd)
				req, _ := http.NewRequest(method, url+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminKey)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode >= 300 {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	client.CloseIdleConnections()
	slices.Sort(latencies)
	q := func(f float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(f*float64(len(latencies))))]
	}
	return result{throughput: float64(len(latencies)) / elapsed.Seconds(), p50: q(0.50), p95: q(0.95), p99: q(0.99), errors: errors, acked: len(latencies)}
}
