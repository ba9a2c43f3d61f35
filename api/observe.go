package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderRequestID names the request id header: accepted from the client when
// well formed, else generated; echoed on every response, in every access and
// error log line, and in problem documents as instance.
const HeaderRequestID = "X-Request-Id"

type requestIDKey struct{}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// validRequestID accepts 1 to 128 characters of [A-Za-z0-9._:-].
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// httpMetrics are the per-route HTTP series and the check latency histogram.
type httpMetrics struct {
	requests *prometheus.CounterVec   // method, route, code
	duration *prometheus.HistogramVec // method, route
	inFlight prometheus.Gauge
	checks   *prometheus.HistogramVec // cached
	limited  *prometheus.CounterVec   // scope: key | organization
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trellis", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by method, route pattern and status code."}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "trellis", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request duration by method and route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trellis", Subsystem: "http", Name: "requests_in_flight",
			Help: "HTTP requests being served."}),
		checks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "trellis", Name: "check_duration_seconds",
			Help:    "POST /v1/check answer time (the check itself, after decoding), by whether the cache answered.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"cached"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trellis", Subsystem: "http", Name: "rate_limited_total",
			Help: "Requests refused with 429, by the bucket that ran dry (key or organization)."}, []string{"scope"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.checks, m.limited)
	return m
}

// observe is the outermost middleware of every route: request id, metrics,
// access log. It renders a handler's error itself (echo would after the
// middleware returned) so that the status it records is the one sent.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(HeaderRequestID, id)
		route := routeOf(c)
		if route == "" {
			route = "unmatched"
		}
		ctx := context.WithValue(req.Context(), requestIDKey{}, id)
		var span trace.Span
		if s.tracer != nil {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(req.Header))
			ctx, span = s.tracer.Start(ctx, req.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", route),
					attribute.String("trellis.request_id", id)))
		}
		c.SetRequest(req.WithContext(ctx))
		s.metrics.inFlight.Inc()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		s.metrics.inFlight.Dec()
		status := c.Response().Status
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(req.Method, route, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(req.Method, route).Observe(elapsed.Seconds())
		if s.access != nil && (status >= 400 || s.accessSample >= 1 || s.accessSample > 0 && mrand.Float64() < s.accessSample) {
			s.access.LogAttrs(req.Context(), slog.LevelInfo, "request",
				slog.String("request_id", id), slog.String("method", req.Method), slog.String("route", route),
				slog.String("path", req.URL.Path), slog.Int("status", status), slog.Int64("bytes", c.Response().Size),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.String("remote", c.RealIP()))
		}
		return nil
	}
}

// observeCheck records one check's latency by whether the cache answered.
func (s *Server) observeCheck(start time.Time, cached bool) {
	label := "false"
	if cached {
		label = "true"
	}
	s.metrics.checks.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

// requestLogger is log with the request's id, for lines about one request.
func requestLogger(log *slog.Logger, c echo.Context) *slog.Logger {
	if id := c.Response().Header().Get(HeaderRequestID); id != "" {
		return log.With("request_id", id)
	}
	return log
}
