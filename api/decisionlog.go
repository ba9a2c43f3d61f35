package api

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-iam/trellis/engine"
)

// DecisionLogConfig configures the decision log (ADR 0014): NDJSON of check
// answers, off unless a writer is given.
type DecisionLogConfig struct {
	W io.Writer
	// Types keeps only checks on these resource types (empty: every type).
	Types []string
	// Sample is the fraction of the kept checks written, 0 to 1 (0 means 1).
	Sample float64
	// Buffer is how many decisions wait for the writer (default 8192): past
	// it, decisions are dropped and counted, never waited for.
	Buffer int
}

// DecisionLog writes check decisions asynchronously through a bounded
// buffer: a check never waits for it; when the writer falls behind,
// decisions are dropped and counted (trellis_decision_log_dropped_total).
type DecisionLog struct {
	cfg     DecisionLogConfig
	queue   chan decision
	done    chan struct{}
	once    sync.Once
	written prometheus.Counter
	dropped prometheus.Counter
}

// decision is one check answer, as recorded on the check path (formatting
// is the writer's work).
type decision struct {
	at                            time.Time
	key, actor                    string
	subject, resource, permission string
	result                        string
	cached                        bool
	latency                       time.Duration
	impersonator, impersonation   string
	requestID                     string
}

// decisionJSON is one line of the log.
type decisionJSON struct {
	Time          time.Time `json:"time"`
	RequestID     string    `json:"requestId,omitempty"`
	Key           string    `json:"key,omitempty"`
	Actor         string    `json:"actor"`
	Subject       string    `json:"subject"`
	Resource      string    `json:"resource"`
	Permission    string    `json:"permission"`
	Result        string    `json:"result"`
	Cached        bool      `json:"cached"`
	LatencyMicros int64     `json:"latencyMicros"`
	Impersonator  string    `json:"impersonator,omitempty"`
	Impersonation string    `json:"impersonation,omitempty"`
}

// NewDecisionLog starts the log's writer; Close stops it after writing what
// is buffered. reg receives its counters (nil: none).
func NewDecisionLog(cfg DecisionLogConfig, reg prometheus.Registerer) *DecisionLog {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 8192
	}
	if cfg.Sample <= 0 || cfg.Sample > 1 {
		cfg.Sample = 1
	}
	l := &DecisionLog{cfg: cfg, queue: make(chan decision, cfg.Buffer), done: make(chan struct{}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trellis", Subsystem: "decision_log", Name: "written_total",
			Help: "Check decisions written to the decision log."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trellis", Subsystem: "decision_log", Name: "dropped_total",
			Help: "Check decisions dropped because the decision log's buffer was full."}),
	}
	if reg != nil {
		reg.MustRegister(l.written, l.dropped)
	}
	go l.run()
	return l
}

// wants reports whether a check on resourceType is logged (type filter, sampling).
func (l *DecisionLog) wants(resourceType string) bool {
	if len(l.cfg.Types) > 0 && !slices.Contains(l.cfg.Types, resourceType) {
		return false
	}
	return l.cfg.Sample >= 1 || rand.Float64() < l.cfg.Sample
}

// record queues d, or drops and counts it when the buffer is full.
func (l *DecisionLog) record(d decision) {
	select {
	case l.queue <- d:
	default:
		l.dropped.Inc()
	}
}

func (l *DecisionLog) run() {
	defer close(l.done)
	w := bufio.NewWriterSize(l.cfg.W, 64<<10)
	enc := json.NewEncoder(w)
	for d := range l.queue {
		_ = enc.Encode(decisionJSON{Time: d.at.UTC(), RequestID: d.requestID, Key: d.key, Actor: d.actor, Subject: d.subject,
			Resource: d.resource, Permission: d.permission, Result: d.result, Cached: d.cached,
			LatencyMicros: d.latency.Microseconds(), Impersonator: d.impersonator, Impersonation: d.impersonation})
		l.written.Inc()
		if len(l.queue) == 0 {
			_ = w.Flush()
		}
	}
	_ = w.Flush()
}

// Close writes what is buffered and stops the writer. Checks must have
// stopped recording (the server is shut down) before it is called.
func (l *DecisionLog) Close() {
	l.once.Do(func() { close(l.queue) })
	<-l.done
}

// logDecision records one check answer when the decision log wants it.
func (s *Server) logDecision(c echo.Context, in checkJSON, res engine.CheckResult, start time.Time) {
	l := s.decisions
	typ, _, _ := strings.Cut(in.Resource, ":")
	if l == nil || !l.wants(typ) {
		return
	}
	p := principal(c)
	d := decision{at: start, key: p.KeyID, actor: p.Actor(), subject: in.Subject, resource: in.Resource, permission: in.Permission,
		result: string(res.Permissionship), cached: res.Cached, latency: time.Since(start),
		impersonator: in.Actor, impersonation: p.Impersonation, requestID: c.Response().Header().Get(HeaderRequestID)}
	if d.impersonator == "" {
		d.impersonator = p.Impersonator
	}
	l.record(d)
}

// Written counts the decisions written; Dropped those dropped.
func (l *DecisionLog) Written() prometheus.Counter { return l.written }

// Dropped counts the decisions dropped because the buffer was full.
func (l *DecisionLog) Dropped() prometheus.Counter { return l.dropped }
