package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/store/pgtest"
)

var (
	bannerURL = regexp.MustCompile(`listening on (http://\S+)`)
	bannerKey = regexp.MustCompile(`Admin key \(generated[^)]*\): (\S+)`)
)

// startServe runs serve with cfg until the test ends or stop is called, and
// returns its base URL, admin key and banner.
func startServe(t *testing.T, cfg Config) (base, key string, banner *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, out) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if strings.Contains(out.String(), "Try:") || (!cfg.Demo && bannerURL.MatchString(out.String())) {
			break
		}
		select {
		case err := <-done:
			stopped = true // serve has returned: nothing left for stop to wait on
			cancel()
			t.Fatalf("serve ended before it was ready: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	m := bannerURL.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no URL in the banner:\n%s", out.String())
	}
	if k := bannerKey.FindStringSubmatch(out.String()); k != nil {
		key = k[1]
	}
	return m[1], key, out, stop
}

func call(t *testing.T, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestServeOnPostgresSurvivesRestart runs `trellis serve --demo --migrate` with
// both SpiceDB and the directory on one PostgreSQL database, writes through
// the directory, restarts the process, and finds the write in both stores.
func TestServeOnPostgresSurvivesRestart(t *testing.T) {
	pg := pgtest.StartWith(t, "track_commit_timestamp=off") // as Debian's default configuration has it
	url := pg.NewDatabase(t)
	cfg := defaultConfig()
	cfg.Addr, cfg.Demo, cfg.Migrate = "127.0.0.1:0", true, true
	cfg.Datastore, cfg.DatabaseURL, cfg.Store = "postgres", url, "postgres"
	cfg.AdminKey = "pg-admin-key"
	cfg.CacheEntries = 0 // read the graph itself after the restart
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// this server runs without track_commit_timestamp: the access history
	// (SpiceDB's watch) asked for explicitly is refused at start, naming the
	// setting; left at its default it is turned off with a warning, and the
	// server starts
	cfg.AccessHistoryExplicit = true
	err := serve(t.Context(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "track_commit_timestamp = on") || !strings.Contains(err.Error(), "--access-history=false") {
		t.Fatalf("serve --access-history on a PostgreSQL datastore without commit timestamps: %v", err)
	}
	cfg.AccessHistoryExplicit = false

	base, printed, _, stop := startServe(t, cfg)
	if printed != "" {
		t.Fatalf("a configured admin key must not be printed, got %q", printed)
	}
	key := cfg.AdminKey
	if code, ready := call(t, "GET", base+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz on postgres: %d %v", code, ready)
	}
	code, org := call(t, "POST", base+"/v1/organizations", key, `{"name":"Umbrella","slug":"umbrella","parent":"northwind"}`)
	if code != 201 {
		t.Fatalf("create org: %d %v", code, org)
	}
	if code, m := call(t, "PUT", base+"/v1/organizations/umbrella/members/iris", key, `{"roles":["admin"]}`); code != 201 {
		t.Fatalf("put member: %d %v", code, m)
	}
	stop()

	base, _, _, _ = startServe(t, cfg)
	if code, got := call(t, "GET", base+"/v1/organizations/umbrella", key, ""); code != 200 || got["id"] != org["id"] {
		t.Fatalf("after restart the organization is gone: %d %v", code, got)
	}
	check := `{"resource":"organization:` + org["id"].(string) + `","permission":"manage","subject":"user:iris"}`
	if code, got := call(t, "POST", base+"/v1/check", key, check); code != 200 || got["allowed"] != true {
		t.Fatalf("after restart the graph lost iris's admin role: %d %v", code, got)
	}
	if code, got := call(t, "GET", base+"/v1/organizations/umbrella/audit/verify", key, ""); code != 200 || got["valid"] != true {
		t.Fatalf("audit chain after restart: %d %v", code, got)
	}
	if code, got := call(t, "GET", base+"/v1/organizations?q=umbrella", key, ""); code != 200 || len(got["organizations"].([]any)) != 1 {
		t.Fatalf("list after restart: %d %v", code, got)
	}
}
