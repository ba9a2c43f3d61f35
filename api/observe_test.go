package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/trellis-iam/trellis/api"
)

// serveDirect sends one request straight into h's ServeHTTP: the middleware
// has finished (metrics counted, access log written) when it returns.
func serveDirect(t *testing.T, h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testKey)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	checkContract(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
	return rec
}

func TestRequestIDsMetricsAndAccessLog(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:d1", "owner", "user:ann"))
	var logs bytes.Buffer
	srv := api.New(api.Deps{Engine: h.graph, AdminKey: testKey,
		AccessLog: slog.New(slog.NewJSONHandler(&logs, nil)), AccessLogSample: 1})
	check := `{"resource":"document:d1","permission":"view","subject":"user:ann"}`

	// request ids: accepted when well formed, else generated; echoed; in problems
	rec := serveDirect(t, srv, "POST", "/v1/check", check, map[string]string{"X-Request-Id": "req-42.a:b_c"})
	if got := rec.Header().Get("X-Request-Id"); rec.Code != 200 || got != "req-42.a:b_c" {
		t.Errorf("status %d, X-Request-Id %q, want the client's", rec.Code, got)
	}
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "é"} {
		rec = serveDirect(t, srv, "POST", "/v1/check", check, map[string]string{"X-Request-Id": bad})
		if got := rec.Header().Get("X-Request-Id"); !generated.MatchString(got) {
			t.Errorf("X-Request-Id %q sent: got %q, want a generated id", bad, got)
		}
	}
	rec = serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1"}`, map[string]string{"X-Request-Id": "bad-one"})
	var prob map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &prob)
	if rec.Code != 400 || prob["instance"] != "urn:trellis:request:bad-one" {
		t.Errorf("problem %d %v: want instance urn:trellis:request:bad-one", rec.Code, prob)
	}

	// traffic: 3 more checks (one uncached, then cached), a 401, an unknown /v1 path
	for range 3 {
		serveDirect(t, srv, "POST", "/v1/check", `{"resource":"document:d1","permission":"edit","subject":"user:ann"}`, nil)
	}
	serveDirect(t, srv, "POST", "/v1/check", check, map[string]string{"Authorization": "Bearer wrong"})
	serveDirect(t, srv, "GET", "/v1/nope", "", nil)

	rec = serveDirect(t, srv, "GET", "/metrics", "", nil)
	parser := expfmt.NewTextParser(promodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no series %s", name)
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no series %s%v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"trellis_http_requests_total", map[string]string{"method": "POST", "route": "/v1/check", "code": "200"}, 8},
		{"trellis_http_requests_total", map[string]string{"method": "POST", "route": "/v1/check", "code": "400"}, 1},
		{"trellis_http_requests_total", map[string]string{"method": "POST", "route": "/v1/check", "code": "401"}, 1},
		{"trellis_http_requests_total", map[string]string{"method": "GET", "route": "/v1/*", "code": "404"}, 1},
		{"trellis_http_request_duration_seconds", map[string]string{"method": "POST", "route": "/v1/check"}, 10},
		{"trellis_http_requests_in_flight", nil, 1},                                 // the scrape itself
		{"trellis_check_duration_seconds", map[string]string{"cached": "false"}, 2}, // the first view and the first edit
		{"trellis_check_duration_seconds", map[string]string{"cached": "true"}, 6},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// SpiceDB's own series are on the same endpoint
	if fams["spicedb_services_logical_checks_total"] == nil && fams["spicedb_check_dispatch_chunk_count"] == nil {
		t.Errorf("no SpiceDB series on /metrics")
	}

	// the access log: one JSON line per request, with its id and route
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 12 { // 10 checks, the unknown path and the scrape (logged after it answered)
		t.Fatalf("%d access log lines, want 12:\n%s", len(lines), logs.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["request_id"] != "req-42.a:b_c" || first["route"] != "/v1/check" || first["status"] != float64(200) || first["method"] != "POST" {
		t.Errorf("first access log line: %v", first)
	}

	// sampling 0: errors only
	logs.Reset()
	quiet := api.New(api.Deps{Engine: h.graph, AdminKey: testKey, AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))})
	serveDirect(t, quiet, "POST", "/v1/check", check, nil)
	serveDirect(t, quiet, "POST", "/v1/check", `{}`, map[string]string{"X-Request-Id": "only-this"})
	if got := strings.TrimSpace(logs.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, `"request_id":"only-this"`) {
		t.Errorf("sampling 0 logged %q, want the error's line only", got)
	}
}
