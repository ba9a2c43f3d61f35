// Command loadgen drives a running Trellis with check requests: it seeds a
// benchmark dataset, finds the throughput at saturation (closed loop), then
// runs open-loop at fixed rates and reports latency percentiles. Latency is
// measured from each request's scheduled start, so a slow server cannot hide
// queueing (no coordinated omission).
//
//	go run ./benchmarks/loadgen -url http://127.0.0.1:8080 -key K -seed -tenants 100
//
// With -target openfga it drives an OpenFGA HTTP server instead (seeded with
// the same data by benchmarks/openfga/cmd/openfga-serve, whose -tenants and
// -users must match), with the same Zipf key sequence as the same check over
// OpenFGA's API, no credentials:
//
//	go run ./benchmarks/loadgen -target openfga -url http://127.0.0.1:18290 -store S -model M
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-iam/trellis/benchmarks/proc"
)

type config struct {
	target         string // "trellis" or "openfga"
	store, model   string // OpenFGA store and authorization model ids
	url, key       string
	seed           bool
	tenants, users int
	duration       time.Duration
	workers        int
	rates          []float64 // fractions of saturation for the open-loop phase
	writeEvery     int
	serverPID      int
}

func main() {
	var c config
	flag.StringVar(&c.target, "target", "trellis", "server to drive: trellis, or openfga (needs -store and -model)")
	flag.StringVar(&c.store, "store", "", "OpenFGA store id (-target openfga)")
	flag.StringVar(&c.model, "model", "", "OpenFGA authorization model id (-target openfga)")
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of the server (Trellis, or openfga-serve: http://127.0.0.1:18290)")
	flag.StringVar(&c.key, "key", os.Getenv("TRELLIS_ADMIN_KEY"), "Trellis admin key (unused with -target openfga)")
	flag.BoolVar(&c.seed, "seed", false, "write the app schema and the dataset first")
	flag.IntVar(&c.tenants, "tenants", 100, "tenants (platform -> reseller -> customer -> region each)")
	flag.IntVar(&c.users, "users", 10, "members per region")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each phase")
	flag.IntVar(&c.workers, "workers", 32, "concurrent clients for the saturation phase")
	flag.IntVar(&c.writeEvery, "write-every", 0, "make every Nth request a relationship write (0: none)")
	flag.IntVar(&c.serverPID, "server-pid", 0, "the server's process id (same machine): report its CPU time per request during saturation")
	flag.Parse()
	if err := checkTarget(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	c.rates = []float64{0.5, 0.8}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	if c.seed {
		if err := seed(client, c); err != nil {
			fmt.Fprintln(os.Stderr, "seed:", err)
			os.Exit(1)
		}
	}
	keys := zipfBodies(c)
	target := c.url
	if c.target == "openfga" {
		if err := verifyAllowed(client, c, keys); err != nil {
			fmt.Fprintln(os.Stderr, "verify:", err)
			os.Exit(1)
		}
		target = fmt.Sprintf("openfga %s store %s model %s", c.url, c.store, c.model)
	}
	fmt.Printf("target %s, %d tenants x %d members, Zipf s=1.1 over %d keys, write every %d\n", target, c.tenants, c.users, c.tenants*c.users, c.writeEvery)
	// warm-up, then saturation
	closedLoop(client, c, keys, 2*time.Second)
	server0, self0, t0 := proc.CPUTime(c.serverPID), proc.CPUTime(os.Getpid()), time.Now()
	sat := closedLoop(client, c, keys, c.duration)
	server1, self1, wall := proc.CPUTime(c.serverPID), proc.CPUTime(os.Getpid()), time.Since(t0)
	fmt.Printf("saturation (closed loop, %d workers): %.0f req/s, p50 %v p95 %v p99 %v, errors %d\n",
		c.workers, sat.rate, sat.p(50), sat.p(95), sat.p(99), sat.errors)
	if n := float64(int64(len(sat.latencies)) + sat.errors); c.serverPID > 0 && n > 0 {
		fmt.Printf("server CPU during saturation: %.1f µs per request, %.0f%% of one CPU; loadgen CPU %.0f%% of one CPU\n",
			float64((server1-server0).Microseconds())/n, 100*(server1-server0).Seconds()/wall.Seconds(), 100*(self1-self0).Seconds()/wall.Seconds())
	}
	for _, f := range c.rates {
		r := openLoop(client, c, keys, f*sat.rate, c.duration)
		fmt.Printf("open loop at %.0f%% of saturation (%.0f req/s offered): achieved %.0f req/s, p50 %v p95 %v p99 %v, errors %d\n",
			f*100, f*sat.rate, r.rate, r.p(50), r.p(95), r.p(99), r.errors)
	}
}

type result struct {
	rate      float64
	latencies []time.Duration
	errors    int64
}

func (r result) p(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * q / 100)
	return r.latencies[i].Round(time.Microsecond)
}

func finish(lat [][]time.Duration, errs int64, elapsed time.Duration) result {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return result{rate: float64(len(all)) / elapsed.Seconds(), latencies: all, errors: errs}
}

type request struct {
	path string
	body []byte
}

func zipfBodies(c config) []request {
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, uint64(c.tenants*c.users-1))
	out := make([]request, 1<<16)
	for i := range out {
		if c.writeEvery > 0 && i%c.writeEvery == c.writeEvery-1 {
			// a viewer on a tenant's document: a write confined to that tenant
			out[i] = request{"/v1/relationships/write", fmt.Appendf(nil, `{"updates":[{"operation":"touch","relationship":{"resource":"document:d%d","relation":"viewer","subject":"user:w%d"}}]}`, i%c.tenants, i)}
			continue
		}
		k := int(z.Uint64())
		t, u := k%c.tenants, k/c.tenants
		if c.target == "openfga" {
			out[i] = request{"/stores/" + url.PathEscape(c.store) + "/check", fmt.Appendf(nil, `{"authorization_model_id":%s,"tuple_key":{"user":"user:u%d_%d","relation":"view","object":"document:d%d"}}`, jsonString(c.model), t, u, t)}
			continue
		}
		out[i] = request{"/v1/check", fmt.Appendf(nil, `{"resource":"document:d%d","permission":"view","subject":"user:u%d_%d"}`, t, t, u)}
	}
	return out
}

func do(client *http.Client, c config, r request) error {
	req, _ := http.NewRequest("POST", c.url+r.path, bytes.NewReader(r.body))
	if c.target != "openfga" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return reportError(err)
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return reportError(fmt.Errorf("%s %s: status %d: %s", req.Method, r.path, resp.StatusCode, bytes.TrimSpace(body)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

var reported atomic.Int64

// reportError prints the first few errors to stderr, so a count of errors
// comes with what they were.
func reportError(err error) error {
	if reported.Add(1) <= 5 {
		fmt.Fprintln(os.Stderr, "loadgen: error:", err)
	}
	return err
}

// checkTarget rejects a -target it does not know and, for openfga, missing ids
// and the flags that only mean something to Trellis.
func checkTarget(c config) error {
	switch c.target {
	case "trellis":
		return nil
	case "openfga":
	default:
		return fmt.Errorf("-target %q: want trellis or openfga", c.target)
	}
	if c.store == "" || c.model == "" {
		return fmt.Errorf("-target openfga needs -store and -model (openfga-serve prints them)")
	}
	var err error
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "seed" || f.Name == "write-every" {
			err = fmt.Errorf("-%s is not supported with -target openfga (openfga-serve seeds the data; writes are not modelled)", f.Name)
		}
	})
	return err
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// verifyAllowed sends each distinct check once and requires each answer to be
// 200 with allowed true, so that wrong ids or a server seeded with other
// -tenants or -users fail loudly rather than measure denials.
func verifyAllowed(client *http.Client, c config, rs []request) error {
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[string(r.body)] {
			continue
		}
		seen[string(r.body)] = true
		resp, err := client.Post(c.url+r.path, "application/json", bytes.NewReader(r.body))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v struct{ Allowed bool }
		if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || !v.Allowed {
			return fmt.Errorf("POST %s %s: %d %s", r.path, r.body, resp.StatusCode, body)
		}
	}
	return nil
}

func closedLoop(client *http.Client, c config, keys []request, d time.Duration) result {
	var next atomic.Int64
	var errs atomic.Int64
	lat := make([][]time.Duration, c.workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < c.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				r := keys[int(next.Add(1))&(len(keys)-1)]
				t0 := time.Now()
				if err := do(client, c, r); err != nil {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	return finish(lat, errs.Load(), time.Since(start))
}

// openLoop offers requests at a fixed rate for d. A pool of workers (as many as
// the client's connections) sends them; a request's latency runs from its
// scheduled start, so time spent queued behind busy workers counts.
func openLoop(client *http.Client, c config, keys []request, rate float64, d time.Duration) result {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	var errs atomic.Int64
	const workers = 256
	lat := make([][]time.Duration, workers)
	type job struct {
		i         int
		scheduled time.Time
	}
	jobs := make(chan job, n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := range jobs {
				if err := do(client, c, keys[j.i&(len(keys)-1)]); err != nil {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(j.scheduled))
			}
		}(w)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- job{i, scheduled}
	}
	close(jobs)
	wg.Wait()
	return finish(lat, errs.Load(), time.Since(start))
}

const appSchema = `definition document {
	relation org: organization
	relation viewer: user
	permission view = viewer + org->access
	permission edit = org->manage
}`

// seed writes the app schema and tenants x (reseller -> customer -> region +
// document). The organizations, users and memberships go through the
// directory's endpoints (the raw-write API refuses organization relationships,
// which the directory owns); the documents, an app type, are raw writes. The
// graph is the one the raw seed wrote before: direct parent, admin and member
// relationships, and the reseller under the platform.
func seed(client *http.Client, c config) error {
	call := func(method, path string, v any) (map[string]any, error) {
		raw, _ := json.Marshal(v)
		req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 && resp.StatusCode != 201 {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		out := map[string]any{}
		_ = json.Unmarshal(body, &out)
		return out, nil
	}
	if _, err := call("PUT", "/v1/schema", map[string]any{"text": appSchema}); err != nil {
		return err
	}
	start := time.Now()
	regions := make([]string, c.tenants) // region organization id of each tenant
	tenant := func(t int) error {
		org := func(kind, parent string) (string, error) {
			slug := fmt.Sprintf("lg-%s%d", kind, t)
			body := map[string]any{"name": slug, "slug": slug}
			if parent != "" {
				body["parent"] = parent
			}
			out, err := call("POST", "/v1/organizations", body)
			id, _ := out["id"].(string)
			return id, err
		}
		member := func(org, user, role string) error {
			if _, err := call("POST", "/v1/users", map[string]any{"id": user, "email": user + "@load.example"}); err != nil {
				return err
			}
			_, err := call("PUT", "/v1/organizations/"+org+"/members/"+user, map[string]any{"roles": []string{role}})
			return err
		}
		r, err := org("r", "")
		if err != nil {
			return err
		}
		cu, err := org("c", r)
		if err != nil {
			return err
		}
		if regions[t], err = org("g", cu); err != nil {
			return err
		}
		if err := member(r, fmt.Sprintf("radmin%d", t), "admin"); err != nil {
			return err
		}
		for u := 0; u < c.users; u++ {
			if err := member(regions[t], fmt.Sprintf("u%d_%d", t, u), "member"); err != nil {
				return err
			}
		}
		return nil
	}
	// a few tenants at a time: each directory write waits for its graph write
	var next atomic.Int64
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			for t := int(next.Add(1)) - 1; t < c.tenants; t = int(next.Add(1)) - 1 {
				if err := tenant(t); err != nil {
					next.Store(int64(c.tenants)) // the others stop at their next tenant
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var failed error
	for range cap(errs) {
		if err := <-errs; err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return failed
	}
	var batch []any
	for t, g := range regions {
		batch = append(batch, map[string]any{"operation": "touch", "relationship": map[string]any{
			"resource": fmt.Sprintf("document:d%d", t), "relation": "org", "subject": "organization:" + g}})
		if len(batch) == 1000 || t == len(regions)-1 {
			if _, err := call("POST", "/v1/relationships/write", map[string]any{"updates": batch}); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	fmt.Printf("seeded %d tenants x %d members through the directory in %v\n", c.tenants, c.users, time.Since(start).Round(time.Millisecond))
	return nil
}
