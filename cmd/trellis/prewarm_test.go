package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServePrewarmsFromThePreviousProcess: a process saves the questions its
// cache answered to --cache-warm-file at shutdown; the next one asks them
// again at start, so a user's first check after the restart is a hit, with
// the answer of the graph the new process serves (memdb: the demo, loaded
// afresh).
func TestServePrewarmsFromThePreviousProcess(t *testing.T) {
	cfg := defaultConfig()
	cfg.Addr, cfg.Demo, cfg.AdminKey = "127.0.0.1:0", true, "warm-admin-key"
	cfg.CacheWarmFile = filepath.Join(t.TempDir(), "warm.ndjson")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []string{
		`{"resource":"document:globex-eu-handbook","permission":"view","subject":"user:emil"}`,
		`{"resource":"document:globex-roadmap","permission":"view","subject":"user:iris"}`,
		`{"resource":"document:globex-eu-handbook","permission":"edit","subject":"user:rita"}`,
	}
	answers := map[string]any{}
	base, _, _, stop := startServe(t, cfg)
	for _, c := range checks {
		code, got := call(t, "POST", base+"/v1/check", cfg.AdminKey, c)
		if code != 200 || got["cached"] != false {
			t.Fatalf("first check %s: %d %v", c, code, got)
		}
		answers[c] = got["allowed"]
	}
	stop()
	saved, err := os.ReadFile(cfg.CacheWarmFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"user:emil", "user:iris", "user:rita"} {
		if !strings.Contains(string(saved), who) {
			t.Errorf("the saved questions lack %s:\n%s", who, saved)
		}
	}
	if st, err := os.Stat(cfg.CacheWarmFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the questions file should be private: %v %v", st.Mode(), err)
	}

	// the next process holds /readyz at 503 while it pre-warms, then is ready
	// with every saved question answered: users sent by a load balancer hit
	cfg.CacheWarmReady = time.Minute
	release := make(chan struct{})
	hold := func() { <-release }
	beforePrewarm.Store(&hold)
	t.Cleanup(func() { beforePrewarm.Store(nil) })
	base, _, _, _ = startServe(t, cfg)
	code, got := call(t, "GET", base+"/readyz", "", "")
	if code != 503 || !strings.Contains(fmt.Sprint(got["detail"]), "pre-warming") {
		t.Errorf("/readyz while pre-warming: %d %v, want 503 naming the pre-warm", code, got)
	}
	close(release)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := call(t, "GET", base+"/readyz", "", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within a minute:\n%s", metrics(t, base, cfg.AdminKey))
		}
	}
	if prewarmed.FindStringSubmatch(metrics(t, base, cfg.AdminKey)) == nil {
		t.Errorf("ready without pre-warming:\n%s", metrics(t, base, cfg.AdminKey))
	}
	for _, c := range checks {
		code, got := call(t, "POST", base+"/v1/check", cfg.AdminKey, c)
		if code != 200 || got["cached"] != true || got["allowed"] != answers[c] {
			t.Errorf("after the restart %s: %d %v (before: allowed %v)", c, code, got, answers[c])
		}
	}
}

var prewarmed = regexp.MustCompile(`(?m)^trellis_check_cache_prewarmed_total ([1-9][0-9]*)$`)

func metrics(t *testing.T, base, key string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}
