package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMemdbWarnRelationships is where SpiceDB's in-memory datastore stops
// being a good home for the graph. Its reader picks an index by definition and
// relation only, then filters every relationship of that definition in turn,
// so an uncached check costs time in proportion to the data: measured at about
// 4 ms at 18,000 relationships, 12 ms at 54,000 and 55–90 ms at 179,000
// (docs/upstream/memdb-resource-id-index.md). Past this size, use the
// PostgreSQL datastore.
const DefaultMemdbWarnRelationships = 50_000

// CountingEngine is an engine that can count what it stores cheaply
// (Embedded on memdb).
type CountingEngine interface {
	RelationshipCount(ctx context.Context) (uint64, error)
}

// MemdbGuard watches the size of the in-memory datastore and says, in the log,
// in /readyz and as a metric, when it holds more than memdb serves well.
type MemdbGuard struct {
	eng       CountingEngine
	threshold uint64
	log       *slog.Logger
	gauge     prometheus.Gauge

	mu     sync.Mutex
	count  uint64
	over   bool
	warned bool
}

// NewMemdbGuard watches eng; threshold 0 means DefaultMemdbWarnRelationships.
// reg, when not nil, gets the gauge trellis_memdb_relationships.
func NewMemdbGuard(eng CountingEngine, threshold uint64, log *slog.Logger, reg prometheus.Registerer) *MemdbGuard {
	if threshold == 0 {
		threshold = DefaultMemdbWarnRelationships
	}
	if log == nil {
		log = slog.Default()
	}
	g := &MemdbGuard{eng: eng, threshold: threshold, log: log,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trellis_memdb_relationships",
			Help: "Relationships held by the embedded in-memory datastore (memdb), counted periodically.",
		})}
	if reg != nil {
		reg.MustRegister(g.gauge)
	}
	return g
}

// Measure counts once and warns when the count first passes the threshold
// (and again after it has come back under it and passed it anew).
func (g *MemdbGuard) Measure(ctx context.Context) error {
	n, err := g.eng.RelationshipCount(ctx)
	if err != nil {
		return err
	}
	g.gauge.Set(float64(n))
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count = n
	g.over = n > g.threshold
	if g.over && !g.warned {
		g.log.Warn("the in-memory datastore (memdb) holds more relationships than it serves well: uncached checks slow down in proportion; use --datastore postgres",
			"relationships", n, "threshold", g.threshold)
	}
	g.warned = g.over
	return nil
}

// Run measures every interval until ctx ends (call Measure first for a
// reading at once).
func (g *MemdbGuard) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.Measure(ctx); err != nil && ctx.Err() == nil {
			g.log.Debug("memdb size", "err", err)
		}
	}
}

// Warnings is what /readyz reports: empty while the datastore is in range.
func (g *MemdbGuard) Warnings() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.over {
		return nil
	}
	return []string{fmt.Sprintf("memdb holds %d relationships (more than %d): uncached checks slow down in proportion to its size; use the PostgreSQL datastore (--datastore postgres)", g.count, g.threshold)}
}
