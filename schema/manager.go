package schema

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	caveattypes "github.com/authzed/spicedb/pkg/caveats/types"
	"github.com/authzed/spicedb/pkg/diff"
	nsdiff "github.com/authzed/spicedb/pkg/diff/namespace"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Graph is what the schema manager needs of the engine.
type Graph interface {
	ReadSchema(ctx context.Context) (string, error)
	WriteSchema(ctx context.Context, text string) (string, error)
	ReadRelationships(ctx context.Context, req engine.ReadRequest) (engine.ReadPage, error)
	LookupSubjects(ctx context.Context, req engine.LookupSubjectsRequest) ([]engine.FoundObject, error)
}

// Version is one applied schema.
type Version struct {
	Version   int       `json:"version"`
	AppText   string    `json:"-"`
	Text      string    `json:"-"`
	AppliedAt time.Time `json:"appliedAt"`
	AppliedBy string    `json:"appliedBy"`
	WrittenAt string    `json:"-"`
}

// Manager applies app schemas on top of the system schema and keeps versions.
// With a store (NewManager's optional argument) versions live there, shared by
// every node: Apply checks expectedVersion and appends the next version in one
// store transaction that holds the schema lock, and Refresh (before each
// schema read or write, and on Poll's interval) adopts a version another node
// applied. Without one they live in this process only (tests, tools).
type Manager struct {
	graph Graph
	store store.Store // nil: versions in memory
	now   func() time.Time

	mu       sync.Mutex
	versions []Version // without a store: every version; with one: the newest known
}

// NewManager returns a manager writing to graph, keeping versions in st when given.
func NewManager(graph Graph, st ...store.Store) *Manager {
	m := &Manager{graph: graph, now: time.Now}
	if len(st) > 0 {
		m.store = st[0]
	}
	return m
}

// Current returns the newest version this node knows (Refresh first to
// include other nodes' changes).
func (m *Manager) Current() (Version, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.versions) == 0 {
		return Version{}, false
	}
	return m.versions[len(m.versions)-1], true
}

// Versions lists every applied version, oldest first.
func (m *Manager) Versions(ctx context.Context) ([]Version, error) {
	if m.store == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		return append([]Version(nil), m.versions...), nil
	}
	var rows []store.SchemaVersion
	if err := m.store.Read(ctx, func(tx store.Tx) error {
		var err error
		rows, err = tx.ListSchemaVersions(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]Version, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out, nil
}

// Version returns version v with its text; trellis.ErrNotFound when there is none.
func (m *Manager) Version(ctx context.Context, v int) (Version, error) {
	if m.store == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, x := range m.versions {
			if x.Version == v {
				return x, nil
			}
		}
		return Version{}, fmt.Errorf("%w: schema version %d", trellis.ErrNotFound, v)
	}
	var row store.SchemaVersion
	err := m.store.Read(ctx, func(tx store.Tx) error {
		var err error
		row, err = tx.GetSchemaVersion(ctx, v)
		return err
	})
	return fromRow(row), err
}

func fromRow(r store.SchemaVersion) Version {
	return Version{Version: r.Version, AppText: r.AppText, Text: r.Text, AppliedAt: r.AppliedAt, AppliedBy: r.AppliedBy, WrittenAt: r.WrittenAt}
}

func toRow(v Version) store.SchemaVersion {
	return store.SchemaVersion{Version: v.Version, AppText: v.AppText, Text: v.Text, AppliedAt: v.AppliedAt, AppliedBy: v.AppliedBy, WrittenAt: v.WrittenAt}
}

// schemaListener is an engine decorator that must hear of schema changes made
// by other nodes (engine.Cached drops its answers).
type schemaListener interface {
	SchemaChanged(ctx context.Context)
}

// Refresh adopts the store's newest version when it is newer than this
// node's; without a store it does nothing.
func (m *Manager) Refresh(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	var row store.SchemaVersion
	err := m.store.Read(ctx, func(tx store.Tx) error {
		var err error
		row, err = tx.LatestSchemaVersion(ctx)
		return err
	})
	if errors.Is(err, trellis.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.adopt(fromRow(row)) {
		if l, ok := m.graph.(schemaListener); ok {
			l.SchemaChanged(ctx)
		}
	}
	return nil
}

// adopt makes v the newest known version if it is newer; it reports whether it was.
func (m *Manager) adopt(v Version) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.versions); n > 0 && m.versions[n-1].Version >= v.Version {
		return false
	}
	if m.store != nil {
		m.versions = append(m.versions[:0], v)
	} else {
		m.versions = append(m.versions, v)
	}
	return true
}

// Poll refreshes every interval until ctx ends, so a node serves another
// node's schema change within one interval even when no schema call reaches it.
func (m *Manager) Poll(ctx context.Context, interval time.Duration, log func(err error)) {
	if m.store == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Refresh(ctx); err != nil && ctx.Err() == nil && log != nil {
				log(err)
			}
		}
	}
}

// Apply composes, validates and writes an app schema. expected, when not nil,
// must equal the current version (409 otherwise), checked against the store
// under its schema lock when there is one, so a stale expectedVersion is
// refused whichever node applied the newer version. A change that would
// orphan stored relationships or alter a system definition is a
// *trellis.RuleError.
func (m *Manager) Apply(ctx context.Context, appText string, expected *int, by string) (Version, error) {
	composed, err := Compose(appText)
	if err != nil {
		return Version{}, err
	}
	if problems := composed.Check(ctx); len(problems) > 0 {
		p := problems[0]
		return Version{}, trellis.Invalid("text", "line %d, column %d: %s", p.Line, p.Column, p.Message)
	}
	if m.store == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		var cur *Version
		if n := len(m.versions); n > 0 {
			cur = &m.versions[n-1]
		}
		v, err := m.write(ctx, cur, composed, appText, expected, by)
		if err != nil {
			return Version{}, err
		}
		m.versions = append(m.versions, v)
		return v, nil
	}
	var v Version
	err = m.store.InTx(ctx, func(tx store.Tx) error {
		var cur *Version
		row, err := tx.LatestSchemaVersion(ctx) // takes the schema lock
		switch {
		case err == nil:
			c := fromRow(row)
			cur = &c
		case !errors.Is(err, trellis.ErrNotFound):
			return err
		}
		if v, err = m.write(ctx, cur, composed, appText, expected, by); err != nil {
			return err
		}
		return tx.InsertSchemaVersion(ctx, toRow(v))
	})
	if err != nil {
		return Version{}, err
	}
	m.adopt(v)
	return v, nil
}

// write checks expected against cur, refuses orphaning changes and writes the
// composed schema to the engine; it returns the version that follows cur.
func (m *Manager) write(ctx context.Context, cur *Version, composed *Composed, appText string, expected *int, by string) (Version, error) {
	curN := 0
	if cur != nil {
		curN = cur.Version
	}
	if expected != nil && *expected != curN {
		return Version{}, fmt.Errorf("schema: expectedVersion %d, current is %d: %w", *expected, curN, trellis.ErrConflict)
	}
	if cur != nil {
		changes, err := m.diff(cur.Text, composed.Text)
		if err != nil {
			return Version{}, err
		}
		orphaned, sample, err := m.orphaned(ctx, changes)
		if err != nil {
			return Version{}, err
		}
		if orphaned > 0 {
			return Version{}, &trellis.RuleError{Code: "schema_in_use", Message: fmt.Sprintf("the change would orphan %d stored relationship(s), e.g. %s; delete them first", orphaned, sample)}
		}
	}
	token, err := m.graph.WriteSchema(ctx, composed.Text)
	if err != nil {
		return Version{}, err
	}
	return Version{Version: curN + 1, AppText: appText, Text: composed.Text, AppliedAt: m.now().UTC(), AppliedBy: by, WrittenAt: token}, nil
}

// Change is one difference between the current and a proposed schema.
type Change struct {
	Kind       string `json:"kind"`
	Definition string `json:"definition"`
	Name       string `json:"name"` // "" for a change of a whole definition or caveat
	// subjectType is set for allowed-type changes (the removed or added subject type).
	subjectType string
}

func (m *Manager) diff(oldText, newText string) ([]Change, error) {
	oldC, err := compile("current", oldText)
	if err != nil {
		return nil, fmt.Errorf("schema: compile current: %w", err)
	}
	newC, err := compile("proposed", newText)
	if err != nil {
		return nil, parseProblem(err)
	}
	d, err := diff.DiffSchemas(diff.NewDiffableSchemaFromCompiledSchema(oldC), diff.NewDiffableSchemaFromCompiledSchema(newC), caveattypes.Default.TypeSet)
	if err != nil {
		return nil, fmt.Errorf("schema: diff: %w", err)
	}
	var out []Change
	for _, n := range d.AddedNamespaces {
		out = append(out, Change{Kind: "definition-added", Definition: n})
	}
	for _, n := range d.RemovedNamespaces {
		out = append(out, Change{Kind: "definition-removed", Definition: n})
	}
	for _, n := range d.AddedCaveats {
		out = append(out, Change{Kind: "caveat-added", Definition: n})
	}
	for _, n := range d.RemovedCaveats {
		out = append(out, Change{Kind: "caveat-removed", Definition: n})
	}
	for name, nd := range d.ChangedNamespaces {
		for _, delta := range nd.Deltas() {
			c := Change{Kind: string(delta.Type), Definition: name, Name: delta.RelationName}
			if delta.AllowedType != nil {
				c.subjectType = delta.AllowedType.Namespace
			}
			out = append(out, c)
		}
	}
	for name, cd := range d.ChangedCaveats {
		for _, delta := range cd.Deltas() {
			out = append(out, Change{Kind: string(delta.Type), Definition: name, Name: delta.ParameterName})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Definition != b.Definition {
			return a.Definition < b.Definition
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out, nil
}

// orphaned counts stored relationships a change set would leave without a schema.
func (m *Manager) orphaned(ctx context.Context, changes []Change) (int, string, error) {
	total, sample := 0, ""
	count := func(f engine.RelationshipFilter) error {
		page, err := m.graph.ReadRelationships(ctx, engine.ReadRequest{Filter: f, Consistency: engine.Consistency{Mode: engine.FullyConsistent}, PageSize: 1000})
		if err != nil {
			var ve *trellis.ValidationError
			if errors.As(err, &ve) { // the filter names something already gone: nothing stored under it
				return nil
			}
			return err
		}
		total += len(page.Relationships)
		if sample == "" && len(page.Relationships) > 0 {
			sample = page.Relationships[0].String()
		}
		return nil
	}
	for _, c := range changes {
		var err error
		switch c.Kind {
		case "definition-removed":
			err = count(engine.RelationshipFilter{ResourceType: c.Definition})
		case string(nsdiff.RemovedRelation):
			err = count(engine.RelationshipFilter{ResourceType: c.Definition, Relation: c.Name})
		case string(nsdiff.RelationAllowedTypeRemoved):
			err = count(engine.RelationshipFilter{ResourceType: c.Definition, Relation: c.Name, Subject: &engine.SubjectFilter{Type: c.subjectType}})
		}
		if err != nil {
			return 0, "", err
		}
	}
	return total, sample, nil
}

// Impact is what a proposed schema would do to stored data and access.
type Impact struct {
	RelationshipsOrphaned int      `json:"relationshipsOrphaned"`
	SubjectsGaining       int      `json:"subjectsGaining"`
	SubjectsLosing        int      `json:"subjectsLosing"`
	Samples               []string `json:"samples"`
}

// Diff compares the current schema with a proposed app part, without applying it.
func (m *Manager) Diff(ctx context.Context, appText string) ([]Change, Impact, error) {
	composed, err := Compose(appText)
	if err != nil {
		return nil, Impact{}, err
	}
	if problems := composed.Check(ctx); len(problems) > 0 {
		p := problems[0]
		return nil, Impact{}, trellis.Invalid("text", "line %d, column %d: %s", p.Line, p.Column, p.Message)
	}
	cur, ok := m.Current()
	oldText := cur.Text
	if !ok {
		c, _ := Compose("")
		oldText = c.Text
	}
	changes, err := m.diff(oldText, composed.Text)
	if err != nil {
		return nil, Impact{}, err
	}
	impact := Impact{Samples: []string{}}
	orphaned, sample, err := m.orphaned(ctx, changes)
	if err != nil {
		return nil, Impact{}, err
	}
	impact.RelationshipsOrphaned = orphaned
	if sample != "" {
		impact.Samples = append(impact.Samples, "orphaned: "+sample)
	}
	if orphaned == 0 {
		if err := m.accessImpact(ctx, composed.Text, changes, &impact); err != nil {
			return nil, Impact{}, err
		}
	}
	if changes == nil {
		changes = []Change{}
	}
	return changes, impact, nil
}

// Bootstrap makes the stored schema the manager's first version: an empty
// engine gets the system schema composed with defaultApp; a populated one
// (e.g. SpiceDB on PostgreSQL after a restart) is adopted as it is. With a
// store, a version already stored (by this node before a restart, or by
// another node) wins: it is written to the engine if the engine's differs.
func (m *Manager) Bootstrap(ctx context.Context, defaultApp string) (Version, error) {
	if m.store != nil {
		return m.bootstrapStored(ctx, defaultApp)
	}
	stored, err := m.graph.ReadSchema(ctx)
	if err != nil {
		return Version{}, err
	}
	if stored == "" {
		return m.Apply(ctx, defaultApp, nil, "system")
	}
	app, err := appPart(ctx, stored)
	if err != nil {
		return Version{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := Version{Version: 1, AppText: app, Text: stored, AppliedAt: m.now().UTC(), AppliedBy: "system"}
	m.versions = append(m.versions[:0], v)
	up, ok, err := m.upgrade(ctx, v)
	if err != nil {
		return Version{}, err
	}
	if ok {
		m.versions = append(m.versions, up)
		return up, nil
	}
	return v, nil
}

// upgrade applies this release's system schema beneath v's app part when it
// differs from the one v holds, as the version after v (applied by
// "system"). A stored system schema that has definitions, relations or
// permissions this release lacks is newer (written by a later release), and
// is kept: ok is false.
func (m *Manager) upgrade(ctx context.Context, v Version) (Version, bool, error) {
	composed, err := Compose(v.AppText)
	if err != nil {
		return Version{}, false, fmt.Errorf("schema: the app schema in force (version %d) does not compose with this release's system schema: %w", v.Version, err)
	}
	if composed.Text == v.Text {
		return Version{}, false, nil
	}
	changes, err := m.diff(v.Text, composed.Text)
	if err != nil {
		return Version{}, false, err
	}
	if len(changes) == 0 {
		return Version{}, false, nil // the same schema, written out differently
	}
	for _, c := range changes {
		if strings.Contains(c.Kind, "removed") {
			return Version{}, false, nil
		}
	}
	up, err := m.write(ctx, &v, composed, v.AppText, nil, "system")
	if err != nil {
		return Version{}, false, fmt.Errorf("schema: applying this release's system schema: %w", err)
	}
	return up, true, nil
}

func (m *Manager) bootstrapStored(ctx context.Context, defaultApp string) (Version, error) {
	var v Version
	err := m.store.InTx(ctx, func(tx store.Tx) error {
		stored, err := m.graph.ReadSchema(ctx)
		if err != nil {
			return err
		}
		row, err := tx.LatestSchemaVersion(ctx) // takes the schema lock: nodes starting together bootstrap once
		switch {
		case err == nil:
			v = fromRow(row)
			up, ok, err := m.upgrade(ctx, v)
			if err != nil {
				return err
			}
			if ok {
				v = up
				return tx.InsertSchemaVersion(ctx, toRow(v))
			}
			if stored != v.Text {
				_, err = m.graph.WriteSchema(ctx, v.Text)
			}
			return err
		case !errors.Is(err, trellis.ErrNotFound):
			return err
		}
		if stored == "" {
			composed, err := Compose(defaultApp)
			if err != nil {
				return err
			}
			if v, err = m.write(ctx, nil, composed, defaultApp, nil, "system"); err != nil {
				return err
			}
		} else {
			app, err := appPart(ctx, stored)
			if err != nil {
				return err
			}
			v = Version{Version: 1, AppText: app, Text: stored, AppliedAt: m.now().UTC(), AppliedBy: "system"}
		}
		return tx.InsertSchemaVersion(ctx, toRow(v))
	})
	if err != nil {
		return Version{}, err
	}
	m.adopt(v)
	return v, nil
}
