// Command realistic is `make bench-realistic`: the check workload of issue 19
// at a size users deploy, against each server as its own process, over HTTP,
// in one run.
//
// Data: tenants organizations trees (root → 3 children → 6 leaves), users
// members of the leaves (one admin of each root), documents each in a leaf
// (every 10th with a direct viewer); checks: Zipf-distributed over a fixed
// list of (user, document) pairs drawn from -seed, half allowed. Arms, each
// its own process (pinned to CPU 1 when the machine has two; the driver runs
// on CPU 0):
//
//	ceiling           benchmarks/ceiling: a constant answer on the same HTTP stack
//	trellis-memdb     trellis serve, SpiceDB's memdb datastore (the default)
//	trellis-postgres  trellis serve --datastore postgres (directory on the memory store)
//	spicedb-postgres  SpiceDB's own server and HTTP gateway (trellis spicedb serve
//	                  --http-enabled, the pinned module's server package) on its
//	                  PostgreSQL datastore, the openfga arm's model and data;
//	                  revision quantization 5 s, SpiceDB's default (Trellis's is 1 s);
//	                  the checks start once minimizeLatency reads see the seed
//	openfga-postgres  benchmarks/openfga's openfga-serve on PostgreSQL, same model and data
//
// PostgreSQL is a throwaway server started from the system's binaries
// (store/pgtest), pinned with the arms, stopped at exit or Ctrl-C. For each arm
// it prints the seeding time, the first minute (the warm-up) in 10-second
// windows and the steady state after it, for reads only and for each write mix
// (-writes 0,1: percent of requests that are a raw write to a document's
// viewer, each followed by a check of that write with its token, which must
// see it; OpenFGA, without tokens, asks for higher consistency). Every check
// answer is compared with the data's truth. The spicedb and openfga arms'
// CPU includes PostgreSQL's, as trellis-postgres's does.
//
// Build the binaries first (benchmarks/realistic.sh does, then runs this).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/trellis-iam/trellis/benchmarks/proc"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/store/pgtest"
)

type config struct {
	data             dataset
	pairs            int
	seed             uint64
	zipf             float64
	warmup, measured time.Duration
	window           time.Duration
	writes           []float64
	workers          int
	seedClients      int
	dbParams         string // appended to trellis-postgres's database URL
	spicedbParams    string // appended to spicedb-postgres's database URL
	arms             []string
	bin, logs        string
	pin              bool
}

func main() {
	var c config
	var writes, arms string
	flag.IntVar(&c.data.tenants, "tenants", 1000, "tenants (an organization tree of 10 each: root, 3 children, 6 leaves)")
	flag.IntVar(&c.data.users, "users", 100_000, "users, members of the leaves (at least 6 a tenant)")
	flag.IntVar(&c.data.docs, "docs", 60_000, "documents, each in a leaf")
	flag.IntVar(&c.pairs, "pairs", 100_000, "distinct (user, document) checks, half allowed")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the pairs and of their Zipf order")
	flag.Float64Var(&c.zipf, "zipf", 1.1, "Zipf exponent s of the checks over the pairs (> 1)")
	flag.DurationVar(&c.warmup, "warmup", 60*time.Second, "warm-up from cold, reported in -window windows")
	flag.DurationVar(&c.measured, "measured", 15*time.Second, "steady-state measurement after the warm-up, per write mix")
	flag.DurationVar(&c.window, "window", 10*time.Second, "window of the warm-up's time series")
	flag.StringVar(&writes, "writes", "0,1", "write mixes, percent of requests (the first mix runs from cold)")
	flag.IntVar(&c.workers, "workers", 32, "closed-loop clients")
	flag.IntVar(&c.seedClients, "seed-clients", 64, "concurrent clients while seeding")
	flag.StringVar(&arms, "arms", "ceiling,trellis-memdb,trellis-postgres,spicedb-postgres,openfga-postgres", "arms to run, in order")
	flag.StringVar(&c.dbParams, "trellis-db-params", "", "connection parameters appended to trellis-postgres's database URL (e.g. default_query_exec_mode=cache_describe)")
	flag.StringVar(&c.spicedbParams, "spicedb-db-params", "default_query_exec_mode=exec", "connection parameters appended to spicedb-postgres's database URL (the default is SpiceDB's own query mode)")
	flag.StringVar(&c.bin, "bin", "bin", "directory of trellis, ceiling and openfga-serve")
	flag.StringVar(&c.logs, "logs", "bin/realistic-logs", "directory for each server's output")
	flag.BoolVar(&c.pin, "pin", true, "pin the servers and PostgreSQL to CPU 1 (with 2+ CPUs and taskset)")
	floor := flag.String("floor", "", "print, for these steady rates (req/s, e.g. 1000,21000), the share of checks asking a pair for the first time in this workload's sequence — misses no answer cache can avoid — and exit")
	flag.Parse()
	for _, w := range strings.Split(writes, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
		if err != nil || f < 0 || f > 100 {
			fail(fmt.Errorf("-writes %q: want percentages, e.g. 0,1", writes))
		}
		c.writes = append(c.writes, f)
	}
	for _, a := range strings.Split(arms, ",") {
		switch a = strings.TrimSpace(a); a {
		case "ceiling", "trellis-memdb", "trellis-postgres", "spicedb-postgres", "openfga-postgres":
			c.arms = append(c.arms, a)
		default:
			fail(fmt.Errorf("-arms: unknown arm %q", a))
		}
	}
	if err := c.data.validate(); err != nil {
		fail(err)
	}
	if c.pairs < 2 || c.workers < 1 || c.seedClients < 1 || c.warmup <= 0 || c.measured <= 0 || c.window <= 0 {
		fail(errors.New("-pairs must be at least 2; -workers, -seed-clients, -warmup, -measured and -window positive"))
	}
	if *floor != "" {
		if err := printFloor(c, *floor); err != nil {
			fail(err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "realistic:", err)
	os.Exit(1)
}

// armResult is one arm's report.
type armResult struct {
	name   string
	seed   time.Duration
	cold   []stats
	steady []stats // one per write mix
	mixes  []float64
	rss    float64
}

func run(ctx context.Context, c config) error {
	pairs := c.data.pairs(c.pairs, c.seed)
	seq, err := zipfSequence(c.pairs, c.zipf, c.seed, 1<<21)
	if err != nil {
		return err
	}
	allowed := 0
	for _, p := range pairs {
		if c.data.allowed(int(p.user), int(p.doc)) {
			allowed++
		}
	}
	cpu := pinning(c.pin)
	load1, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("# realistic: %s, %d CPUs, load average %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), strings.Join(strings.Fields(string(load1))[:3], " "))
	fmt.Printf("data: %d tenants × (root → 3 → 6 leaves), %d users, %d documents = %d relationships; checks: Zipf s=%g over %d pairs (%d allowed), seed %d\n",
		c.data.tenants, c.data.users, c.data.docs, c.data.relationships(), c.zipf, c.pairs, allowed, c.seed)
	fmt.Printf("run: %d closed-loop workers, warm-up %v (windows of %v), measured %v per write mix %v; servers on CPU %s\n",
		c.workers, c.warmup, c.window, c.measured, c.writes, orAny(cpu))
	if err := os.MkdirAll(c.logs, 0o755); err != nil {
		return err
	}

	var pg *pgtest.Server
	for _, a := range c.arms {
		if strings.HasSuffix(a, "-postgres") && pg == nil {
			if pg, err = pgtest.StartServer(); err != nil {
				return fmt.Errorf("PostgreSQL: %w", err)
			}
			defer pg.Stop()
			if err := pinTree(pg.PID(), cpu); err != nil {
				return err
			}
		}
	}
	var results []armResult
	for _, a := range c.arms {
		r, err := runArm(ctx, c, a, pg, cpu, pairs, seq)
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		results = append(results, r)
	}
	printReport(c, results)
	return nil
}

func orAny(cpu string) string {
	if cpu == "" {
		return "any (unpinned)"
	}
	return cpu
}

// createDatabase makes an empty database on pg and returns its URL.
func createDatabase(ctx context.Context, pg *pgtest.Server, name string) (string, error) {
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return strings.Replace(pg.URL(), "/postgres?", "/"+name+"?", 1), nil
}

func runArm(ctx context.Context, c config, arm string, pg *pgtest.Server, cpu string, pairs []pair, seq []int32) (armResult, error) {
	res := armResult{name: arm}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	t := &target{client: client}
	var argv []string
	ready, pgPID := "/readyz", 0
	idsFile := ""
	switch arm {
	case "ceiling":
		t.kind, t.base = "ceiling", "http://127.0.0.1:18389"
		argv = []string{filepath.Join(c.bin, "ceiling"), "-addr", "127.0.0.1:18389"}
	case "trellis-memdb", "trellis-postgres":
		key := make([]byte, 16)
		_, _ = rand.Read(key)
		t.kind, t.key = "trellis", hex.EncodeToString(key)
		port := "18390"
		if arm == "trellis-postgres" {
			port = "18391"
		}
		t.base = "http://127.0.0.1:" + port
		argv = []string{filepath.Join(c.bin, "trellis"), "serve", "--admin-key", t.key, "--addr", "127.0.0.1:" + port, "--log-level", "error", "--store", "memory", "--pprof-addr", "127.0.0.1:18396"}
		if arm == "trellis-postgres" {
			url, err := createDatabase(ctx, pg, "trellis_spicedb")
			if err != nil {
				return res, err
			}
			if c.dbParams != "" {
				url += "&" + c.dbParams
			}
			argv = append(argv, "--datastore", "postgres", "--database-url", url, "--migrate")
			pgPID = pg.PID()
		}
	case "spicedb-postgres":
		url, err := createDatabase(ctx, pg, "spicedb")
		if err != nil {
			return res, err
		}
		trellis := filepath.Join(c.bin, "trellis")
		// SpiceDB as shipped: its default query mode (exec), which Trellis's wrapper would
		// otherwise replace with prepared statements (ADR 0019); -spicedb-db-params overrides
		if c.spicedbParams != "" {
			url += "&" + c.spicedbParams
		}
		if out, err := exec.CommandContext(ctx, trellis, "spicedb", "migrate", "head", "--datastore-engine", "postgres", "--datastore-conn-uri", url).CombinedOutput(); err != nil {
			return res, fmt.Errorf("spicedb migrate head: %w: %s", err, out)
		}
		key := make([]byte, 16)
		_, _ = rand.Read(key)
		t.kind, t.key, t.base = "spicedb", hex.EncodeToString(key), "http://127.0.0.1:18394"
		argv = []string{trellis, "spicedb", "serve", "--grpc-addr", "127.0.0.1:18395", "--grpc-preshared-key", t.key,
			"--http-enabled", "--http-addr", "127.0.0.1:18394", "--datastore-engine", "postgres", "--datastore-conn-uri", url,
			"--datastore-revision-quantization-interval", spicedbQuantization.String(), "--log-level", "error"}
		ready, pgPID = "/healthz", pg.PID()
	case "openfga-postgres":
		url, err := createDatabase(ctx, pg, "openfga")
		if err != nil {
			return res, err
		}
		t.kind, t.base = "openfga", "http://127.0.0.1:18392"
		idsFile = filepath.Join(c.logs, "openfga-ids")
		_ = os.Remove(idsFile)
		argv = []string{filepath.Join(c.bin, "openfga-serve"), "-addr", "127.0.0.1:18392", "-grpc-addr", "127.0.0.1:18393",
			"-datastore", "postgres", "-datastore-uri", url, "-tenants", "0", "-ids-file", idsFile}
		ready, pgPID = "/healthz", pg.PID()
	}
	srv, err := start(argv, cpu, filepath.Join(c.logs, arm+".log"))
	if err != nil {
		return res, err
	}
	defer srv.stop()
	if err := srv.awaitReady(ctx, t.base+ready, 2*time.Minute); err != nil {
		return res, err
	}
	if idsFile != "" {
		if t.store, t.model, err = awaitIDs(ctx, srv, idsFile); err != nil {
			return res, err
		}
	}
	fmt.Printf("== %s (pid %d)\n", arm, srv.pid())
	seedStart := time.Now()
	switch t.kind {
	case "trellis":
		err = seedTrellis(ctx, t, c.data, c.seedClients)
	case "openfga":
		err = seedOpenFGA(ctx, t, c.data, c.seedClients)
	case "spicedb":
		err = seedSpiceDB(ctx, t, c.data, c.seedClients)
	}
	if err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	if t.kind != "ceiling" {
		res.seed = time.Since(seedStart)
		fmt.Printf("  seeded %d relationships in %v\n", c.data.relationships(), res.seed.Round(time.Millisecond))
	}
	if t.kind == "spicedb" {
		wait, err := awaitSpiceDBSeed(ctx, t)
		if err != nil {
			return res, fmt.Errorf("seed: %w", err)
		}
		fmt.Printf("  visible to minimizeLatency checks: waited %v (until a marker showed, then one quantization interval)\n", wait.Round(time.Millisecond))
	}
	l := &load{t: t, data: c.data, pairs: pairs, seq: seq, workers: c.workers, verify: t.kind != "ceiling", srvPID: srv.pid(), pgPID: pgPID}
	for i, mix := range c.writes {
		if t.kind == "ceiling" && mix > 0 {
			continue // the ceiling answers checks only
		}
		l.writePct = mix
		if i == 0 {
			res.cold = l.phase(ctx, c.warmup, c.window)
			if ctx.Err() != nil {
				return res, ctx.Err() // interrupted: the windows are incomplete
			}
			for k, w := range res.cold {
				fmt.Printf("  cold %3.0f–%3.0f s: %s\n", float64(k)*c.window.Seconds(), float64(k)*c.window.Seconds()+w.seconds, line(w))
			}
		} else {
			l.phase(ctx, min(c.warmup, 10*time.Second), time.Hour) // the mix settles, unreported
		}
		s := l.phase(ctx, c.measured, time.Hour)[0]
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		fmt.Printf("  steady, %g %% writes: %s\n", mix, line(s))
		res.steady = append(res.steady, s)
		res.mixes = append(res.mixes, mix)
	}
	res.rss = proc.RSSPeak(srv.pid())
	return res, nil
}

func line(s stats) string {
	return fmt.Sprintf("%.0f req/s, p50 %v p99 %v, errors %d, wrong %d, stale %d, hit ratio %s",
		s.rate(), s.p(50).Round(time.Microsecond), s.p(99).Round(time.Microsecond), s.errors, s.wrong, s.stale, s.hitRatio())
}

// awaitIDs waits for openfga-serve's ids file (written once its store and
// model exist).
func awaitIDs(ctx context.Context, srv *server, path string) (store, model string, err error) {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if raw, err := os.ReadFile(path); err == nil {
			for _, l := range strings.Split(string(raw), "\n") {
				if v, ok := strings.CutPrefix(l, "OPENFGA_STORE="); ok {
					store = v
				}
				if v, ok := strings.CutPrefix(l, "OPENFGA_MODEL="); ok {
					model = v
				}
			}
			if store != "" && model != "" {
				return store, model, nil
			}
		}
		select {
		case <-srv.done:
			return "", "", fmt.Errorf("openfga-serve exited; see %s", srv.log)
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", "", fmt.Errorf("no ids in %s after 2 minutes; see %s", path, srv.log)
}

func printReport(c config, results []armResult) {
	var ceiling float64
	for _, r := range results {
		if r.name == "ceiling" && len(r.steady) > 0 {
			ceiling = r.steady[0].rate()
		}
	}
	fmt.Println()
	fmt.Println("### Seeding")
	fmt.Println("| arm | relationships | time |")
	fmt.Println("|---|--:|--:|")
	for _, r := range results {
		if r.name != "ceiling" {
			fmt.Printf("| %s | %d | %v |\n", r.name, c.data.relationships(), r.seed.Round(time.Second/10))
		}
	}
	fmt.Println()
	fmt.Printf("### First %v from cold (%v windows, %g %% writes)\n", c.warmup, c.window, c.writes[0])
	fmt.Println("| arm | window | req/s | p50 | p99 | errors | wrong | cache hit ratio |")
	fmt.Println("|---|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		for k, w := range r.cold {
			from := float64(k) * c.window.Seconds()
			fmt.Printf("| %s | %.0f–%.0f s | %.0f | %v | %v | %d | %d | %s |\n", r.name, from, from+w.seconds, w.rate(),
				w.p(50).Round(time.Microsecond), w.p(99).Round(time.Microsecond), w.errors, w.wrong, w.hitRatio())
		}
	}
	fmt.Println()
	fmt.Printf("### Steady state (%v after the warm-up)\n", c.measured)
	fmt.Println("| arm | writes | req/s | × ceiling | p50 | p99 | server CPU µs/request | + PostgreSQL µs/request | RSS peak MiB | cache hit ratio | errors | wrong | stale |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		for i, s := range r.steady {
			x := "–"
			if ceiling > 0 {
				x = fmt.Sprintf("%.3f", s.rate()/ceiling)
			}
			n := float64(s.requests)
			pgcol := "–"
			if s.pgCPU > 0 {
				pgcol = fmt.Sprintf("%.0f", float64(s.pgCPU.Microseconds())/n)
			}
			stale := "–"
			if s.writes > 0 {
				stale = fmt.Sprintf("%d of %d", s.stale, s.writes)
			}
			fmt.Printf("| %s | %g %% | %.0f | %s | %v | %v | %.0f | %s | %.0f | %s | %d | %d | %s |\n", r.name, r.mixes[i], s.rate(), x,
				s.p(50).Round(time.Microsecond), s.p(99).Round(time.Microsecond), float64(s.serverCPU.Microseconds())/n, pgcol, r.rss, s.hitRatio(), s.errors, s.wrong, stale)
		}
	}
}
