package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// syncBuffer is a goroutine-safe output sink for serve.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	curlLine = regexp.MustCompile(`curl -s (\S+) -H 'Authorization: Bearer (\S+)' -H 'Content-Type: application/json' -d '([^']+)'`)
	getLine  = regexp.MustCompile(`(?m)^curl -s '?([^' ]+)'? -H 'Authorization: Bearer (\S+)'$`)
)

// TestDemoTourAnswersAsPrinted starts `trellis serve --demo` as make run does and runs
// the three printed curl commands: allowed, denied, and an explain with a path.
func TestDemoTourAnswersAsPrinted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := defaultConfig()
	cfg.Addr, cfg.Demo = "127.0.0.1:0", true
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var cmds [][]string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if cmds = curlLine.FindAllStringSubmatch(out.String(), -1); len(cmds) == 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(cmds) != 3 {
		t.Fatalf("want 3 curl commands in the banner, got %d:\n%s", len(cmds), out.String())
	}
	if !strings.Contains(out.String(), "Admin key") {
		t.Errorf("banner does not print the generated admin key:\n%s", out.String())
	}
	results := make([]map[string]any, 3)
	for i, c := range cmds {
		req, _ := http.NewRequest("POST", c[1], strings.NewReader(c[3]))
		req.Header.Set("Authorization", "Bearer "+c[2])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("curl %d: status %d %s", i+1, resp.StatusCode, raw)
		}
		if err := json.Unmarshal(raw, &results[i]); err != nil {
			t.Fatal(err)
		}
	}
	if results[0]["allowed"] != true {
		t.Errorf("first curl should be allowed: %v", results[0])
	}
	if results[1]["allowed"] != false {
		t.Errorf("second curl should be denied: %v", results[1])
	}
	paths, _ := results[2]["paths"].([]any)
	if results[2]["allowed"] != true || len(paths) != 1 || len(paths[0].([]any)) != 4 {
		t.Errorf("explain should show one 4-step path: %v", results[2])
	}

	// the directory part of the tour: the tree, a customer admin's token, tenant isolation, the audit chain
	gets := getLine.FindAllStringSubmatch(out.String(), -1)
	if len(gets) != 4 {
		t.Fatalf("want 4 GET curls in the banner, got %d:\n%s", len(gets), out.String())
	}
	wantStatus := []int{200, 200, 404, 200}
	bodies := make([]map[string]any, len(gets))
	for i, g := range gets {
		req, _ := http.NewRequest("GET", g[1], nil)
		req.Header.Set("Authorization", "Bearer "+g[2])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus[i] {
			t.Fatalf("GET %s: status %d, want %d: %s", g[1], resp.StatusCode, wantStatus[i], raw)
		}
		_ = json.Unmarshal(raw, &bodies[i])
	}
	if orgs, _ := bodies[0]["organizations"].([]any); len(orgs) != 5 {
		t.Errorf("the demo tree has 5 organizations: %v", bodies[0])
	}
	if members, _ := bodies[1]["members"].([]any); len(members) != 2 {
		t.Errorf("globex has 2 members (gary, gina): %v", bodies[1])
	}
	if bodies[3]["valid"] != true {
		t.Errorf("globex's audit chain should verify: %v", bodies[3])
	}
}

func TestSchemaValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.zed")
	bad := filepath.Join(dir, "bad.zed")
	os.WriteFile(good, []byte(demoAppSchema), 0o600)
	os.WriteFile(bad, []byte("definition document {\n\trelation org: organization\n\tpermission view = nothing_here\n}\n"), 0o600)

	run := func(args ...string) (string, error) {
		cmd := rootCmd()
		var b bytes.Buffer
		cmd.SetOut(&b)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return b.String(), err
	}
	if out, err := run("schema", "validate", good); err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("good schema: %v %q", err, out)
	}
	out, err := run("schema", "validate", bad)
	if err == nil {
		t.Fatalf("bad schema accepted: %q", out)
	}
	if !strings.Contains(out, bad+":3:") {
		t.Errorf("error should point at line 3 of the file: %q", out)
	}
	if out, err := run("version"); err != nil || !strings.HasPrefix(out, "trellis ") {
		t.Errorf("version: %v %q", err, out)
	}
}

func TestConfigFromEnvAndValidate(t *testing.T) {
	t.Setenv("TRELLIS_DATASTORE", "postgres")
	t.Setenv("TRELLIS_ADDR", "127.0.0.1:9999")
	t.Setenv("TRELLIS_READ_TIMEOUT", "7s")
	t.Setenv("TRELLIS_MOVE_PREVIEW_TIMEOUT", "3s")
	cfg := defaultConfig()
	cmd := &cobra.Command{Use: "serve"}
	bindServeFlags(cmd, &cfg)
	if err := cmd.ParseFlags([]string{"--addr", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7777" {
		t.Errorf("a command-line flag must win over env: %q", cfg.Addr)
	}
	if cfg.Datastore != "postgres" || cfg.ReadTimeout != 7*time.Second || cfg.MovePreviewTimeout != 3*time.Second {
		t.Errorf("env not applied: %q, read timeout %v, move preview timeout %v", cfg.Datastore, cfg.ReadTimeout, cfg.MovePreviewTimeout)
	}
	if d := defaultConfig(); d.ReadHeaderTimeout <= 0 || d.ReadTimeout <= 0 || d.WriteTimeout <= 0 || d.IdleTimeout <= 0 {
		t.Errorf("every HTTP server timeout needs a default: %+v", d)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Errorf("postgres without a URL must be refused naming --database-url: %v", err)
	}
	cfg.Datastore, cfg.LogLevel, cfg.IdleTimeout = "cassandra", "loud", 0
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--datastore") || !strings.Contains(err.Error(), "--log-level") || !strings.Contains(err.Error(), "--idle-timeout") {
		t.Errorf("every invalid setting must be reported: %v", err)
	}
}

// TestAuditKeyFromConfig: the audit chains' checkpoint key comes from
// --audit-key, else from the admin key, the same at every start; a PostgreSQL
// store without either is refused (a generated admin key dies with the process).
func TestAuditKeyFromConfig(t *testing.T) {
	cfg := defaultConfig()
	a, b := auditKey(cfg, "admin-one"), auditKey(cfg, "admin-one")
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("the key derived from one admin key differs between starts: %x, %x", a, b)
	}
	if bytes.Equal(a, auditKey(cfg, "admin-two")) || bytes.Equal(a, []byte("admin-one")) {
		t.Error("the audit key must be derived (HKDF), not the admin key itself nor equal for two admin keys")
	}
	cfg.AuditKey = "a-separate-audit-secret"
	if c := auditKey(cfg, "admin-one"); bytes.Equal(c, a) || !bytes.Equal(c, auditKey(cfg, "admin-two")) {
		t.Error("--audit-key must take precedence over the admin key")
	}

	cfg = defaultConfig()
	cfg.Store, cfg.StoreURL = "postgres", "postgres://db/trellis"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--audit-key") {
		t.Errorf("a PostgreSQL store without --audit-key or --admin-key must be refused: %v", err)
	}
	cfg.AdminKey = "admin-one"
	if err := cfg.Validate(); err != nil {
		t.Errorf("with an admin key: %v", err)
	}
	cfg.AuditKey = "short"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--audit-key") {
		t.Errorf("a short --audit-key must be refused: %v", err)
	}
}

// TestServeReportsMemdbPastItsSize: a demo on memdb is small, so /readyz has no
// warning by default; with the threshold below the demo's size, /readyz (still
// 200) and the metrics say memdb holds more than it serves well.
func TestServeReportsMemdbPastItsSize(t *testing.T) {
	for _, tc := range []struct {
		threshold int
		warned    bool
	}{{0, false}, {10, true}} {
		cfg := defaultConfig()
		cfg.Addr, cfg.Demo = "127.0.0.1:0", true
		if tc.threshold > 0 {
			cfg.MemdbWarnRelationships = tc.threshold
		}
		base, _, _, stop := startServe(t, cfg)
		status, body := call(t, http.MethodGet, base+"/readyz", "", "")
		warnings, _ := body["warnings"].([]any)
		if status != http.StatusOK || body["status"] != "ready" || (len(warnings) > 0) != tc.warned {
			t.Fatalf("threshold %d: /readyz = %d %v", tc.threshold, status, body)
		}
		if tc.warned && !strings.Contains(warnings[0].(string), "memdb holds") {
			t.Fatalf("warning = %q", warnings[0])
		}
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^trellis_memdb_relationships [1-9]`).Match(metrics) {
			t.Fatalf("no memdb size in /metrics:\n%s", metrics)
		}
		stop()
	}
}
