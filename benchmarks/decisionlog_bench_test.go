package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-iam/trellis/api"
)

// BenchmarkCheckHandlerDecisionLog is the cost of the decision log on the
// cached check path (as BenchmarkCheckHandler: warm cache, Zipf keys, the
// admin key): off, on (every check, written to io.Discard) and sampled at 10 %.
//
//	go test -run '^$' -bench BenchmarkCheckHandlerDecisionLog -benchmem ./benchmarks/
func BenchmarkCheckHandlerDecisionLog(b *testing.B) {
	c, reqs := warmAll(b, fixture(b, 100, 10), 100, 10)
	bodies := checkBodies(reqs)
	for _, arm := range []struct {
		name   string
		sample float64
	}{{"off", 0}, {"on", 1}, {"sampled-10pct", 0.1}} {
		b.Run(arm.name, func(b *testing.B) {
			var dl *api.DecisionLog
			if arm.sample > 0 {
				dl = api.NewDecisionLog(api.DecisionLogConfig{W: io.Discard, Sample: arm.sample}, nil)
				defer dl.Close()
			}
			h := api.New(api.Deps{Engine: c, AdminKey: benchKey, DecisionLog: dl})
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(bodies[i&(len(bodies)-1)]))
				req.Header.Set("Authorization", "Bearer "+benchKey)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			if dl != nil {
				b.ReportMetric(dropped(dl), "dropped")
			}
		})
	}
}

func dropped(dl *api.DecisionLog) float64 { return testutil.ToFloat64(dl.Dropped()) }
