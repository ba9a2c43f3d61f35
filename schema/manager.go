package schema

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	caveattypes "github.com/authzed/spicedb/pkg/caveats/types"
	"github.com/authzed/spicedb/pkg/diff"
	nsdiff "github.com/authzed/spicedb/pkg/diff/namespace"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
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
type Manager struct {
	graph Graph
	now   func() time.Time

	mu       sync.Mutex
	versions []Version
}

// NewManager returns a manager writing to graph.
func NewManager(graph Graph) *Manager {
	return &Manager{graph: graph, now: time.Now}
}

// Current returns the newest applied version.
func (m *Manager) Current() (Version, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.versions) == 0 {
		return Version{}, false
	}
	return m.versions[len(m.versions)-1], true
}

// Versions lists every applied version, oldest first.
func (m *Manager) Versions() []Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Version(nil), m.versions...)
}

// Apply composes, validates and writes an app schema. expected, when not nil,
// must equal the current version (409 otherwise). A change that would orphan
// stored relationships or alter a system definition is a *trellis.RuleError.
func (m *Manager) Apply(ctx context.Context, appText string, expected *int, by string) (Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := 0
	if n := len(m.versions); n > 0 {
		cur = m.versions[n-1].Version
	}
	if expected != nil && *expected != cur {
		return Version{}, fmt.Errorf("schema: expectedVersion %d, current is %d: %w", *expected, cur, trellis.ErrConflict)
	}
	composed, err := Compose(appText)
	if err != nil {
		return Version{}, err
	}
	if problems := composed.Check(ctx); len(problems) > 0 {
		p := problems[0]
		return Version{}, trellis.Invalid("text", "line %d, column %d: %s", p.Line, p.Column, p.Message)
	}
	if cur > 0 {
		changes, err := m.diff(m.versions[len(m.versions)-1].Text, composed.Text)
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
	v := Version{Version: cur + 1, AppText: appText, Text: composed.Text, AppliedAt: m.now().UTC(), AppliedBy: by, WrittenAt: token}
	m.versions = append(m.versions, v)
	return v, nil
}

// Change is one difference between the current and a proposed schema.
type Change struct {
	Kind       string `json:"kind"`
	Definition string `json:"definition"`
	Name       string `json:"name,omitempty"`
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
// (e.g. SpiceDB on PostgreSQL after a restart) is adopted as it is.
func (m *Manager) Bootstrap(ctx context.Context, defaultApp string) (Version, error) {
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
	return v, nil
}
