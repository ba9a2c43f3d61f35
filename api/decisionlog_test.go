package api_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-iam/trellis/api"
)

func TestDecisionLog(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:d1", "owner", "user:ann"))
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	dl := api.NewDecisionLog(api.DecisionLogConfig{W: &out, Types: []string{"document"}}, reg)
	srv := api.New(api.Deps{Engine: h.graph, AdminKey: testKey, DecisionLog: dl})
	serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann"}`, map[string]string{"X-Request-Id": "r1"})
	serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann"}`, nil)
	serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1","permission":"edit","subject":"user:bob"}`, nil)
	serveDirect(t, srv, "POST", "/v1/check/bulk", `{"items":[{"resource":"document:d1","permission":"view","subject":"user:bob"},{"resource":"organization:o1","permission":"access","subject":"user:bob"}]}`, nil)
	serveDirect(t, srv, "POST", "/v1/check", `{"resource":"organization:o1","permission":"access","subject":"user:ann"}`, nil) // filtered out
	dl.Close()

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d decisions, want 4 (documents only):\n%s", len(lines), out.String())
	}
	var first, second, third map[string]any
	for i, v := range []*map[string]any{&first, &second, &third} {
		if err := json.Unmarshal([]byte(lines[i]), v); err != nil {
			t.Fatal(err)
		}
	}
	wantEqual(t, "first decision", []any{first["requestId"], first["actor"], first["subject"], first["resource"], first["permission"], first["result"], first["cached"]},
		[]any{"r1", "provider:admin-key", "user:ann", "document:d1", "view", "HAS_PERMISSION", false})
	wantEqual(t, "second is cached", second["cached"], true)
	wantEqual(t, "third denied", third["result"], "NO_PERMISSION")
	if _, ok := first["latencyMicros"].(float64); !ok {
		t.Errorf("no latency: %v", first)
	}
	if got := testutil.ToFloat64(dl.Written()); got != 4 {
		t.Errorf("written counter %v, want 4", got)
	}
}

// blockedWriter holds every write until released, telling when one waits.
type blockedWriter struct{ entered, release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return len(p), nil
}

// A writer that falls behind never slows checks: past the buffer, decisions
// are dropped and counted.
func TestDecisionLogDropsRatherThanWaits(t *testing.T) {
	h := newHarness(t, docApp)
	w := blockedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	dl := api.NewDecisionLog(api.DecisionLogConfig{W: w, Buffer: 1}, nil)
	srv := api.New(api.Deps{Engine: h.graph, AdminKey: testKey, DecisionLog: dl})
	check := func() {
		t.Helper()
		if rec := serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann"}`, nil); rec.Code != 200 {
			t.Fatalf("check: %d", rec.Code)
		}
	}
	check()
	<-w.entered // the writer holds the first decision and waits on the file
	for range 5 {
		check() // answered while the writer is stuck
	}
	// one more fits the buffer; the other four are dropped
	if dropped := testutil.ToFloat64(dl.Dropped()); dropped != 4 {
		t.Errorf("dropped %v, want 4", dropped)
	}
	close(w.release)
	dl.Close()
	if written := testutil.ToFloat64(dl.Written()); written != 2 {
		t.Errorf("written %v, want 2", written)
	}
}
