package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every series the Grafana dashboard queries is one Trellis (or SpiceDB, or
// Go) exports: a renamed metric fails here, not silently on a screen.
func TestDashboardQueriesKnownSeries(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	known := []string{
		"trellis_http_requests_total", "trellis_http_request_duration_seconds_bucket", "trellis_http_requests_in_flight",
		"trellis_check_duration_seconds_bucket", "trellis_check_cache_hits_total", "trellis_check_cache_misses_total",
		"trellis_check_cache_epoch_bumps_total", "trellis_http_rate_limited_total", "trellis_decision_log_written_total",
		"trellis_decision_log_dropped_total", "spicedb_services_logical_checks_total", "spicedb_datastore_query_latency_bucket",
		"go_goroutines", "go_memstats_heap_inuse_bytes",
	}
	series := regexp.MustCompile(`\b(trellis|spicedb|go)_[a-z_]+\b`)
	if len(dash.Panels) == 0 {
		t.Fatal("no panels")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				if !strings.HasPrefix(name, "go_") || name == "go_goroutines" || name == "go_memstats_heap_inuse_bytes" {
					found := false
					for _, k := range known {
						found = found || k == name
					}
					if !found {
						t.Errorf("panel %q queries %s, which nothing exports", p.Title, name)
					}
				}
			}
		}
	}
}
