package schema

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/authzed/spicedb/pkg/development"
	nsdiff "github.com/authzed/spicedb/pkg/diff/namespace"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	devinterface "github.com/authzed/spicedb/pkg/proto/developer/v1"
	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/generator"
	"github.com/authzed/spicedb/pkg/schemadsl/input"

	"github.com/trellis-iam/trellis"
)

// SystemText is the fixed system schema every deployment starts from.
//
//go:embed system.zed
var SystemText string

var useLine = regexp.MustCompile(`(?m)^[ \t]*use[ \t]+([a-z_]+)[ \t]*(//.*)?$`)

// Problem is one schema error, positioned in the text the caller sent.
type Problem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// Composed is the system schema joined with one app part.
type Composed struct {
	// Text is the full schema written to the engine.
	Text string
	// AppText is the provider's part as sent.
	AppText string
	// appOffset is the number of composed lines before the app part's first line.
	appOffset int
}

func compile(name, text string) (*compiler.CompiledSchema, error) {
	return compiler.Compile(compiler.InputSchema{Source: input.Source(name), SchemaString: text}, compiler.AllowUnprefixedObjectType())
}

var systemDefs = func() map[string]*core.NamespaceDefinition {
	cs, err := compile("system", SystemText)
	if err != nil {
		panic(fmt.Sprintf("schema: system.zed does not compile: %v", err))
	}
	m := map[string]*core.NamespaceDefinition{}
	for _, d := range cs.ObjectDefinitions {
		m[d.Name] = d
	}
	return m
}()

// systemCaveats are the caveats system.zed defines.
var systemCaveats = func() map[string]bool {
	cs, err := compile("system", SystemText)
	if err != nil {
		panic(fmt.Sprintf("schema: system.zed does not compile: %v", err))
	}
	m := map[string]bool{}
	for _, c := range cs.CaveatDefinitions {
		m[c.Name] = true
	}
	return m
}()

// IsSystemDefinition reports whether name is one of the fixed system definitions.
func IsSystemDefinition(name string) bool {
	_, ok := systemDefs[name]
	return ok
}

// blank replaces lines [from, to] (0-based, inclusive) with empty lines, keeping line numbers.
func blank(lines []string, from, to int) {
	for i := from; i <= to && i < len(lines); i++ {
		lines[i] = ""
	}
}

// definitionEnd finds the line of the brace closing a definition that starts at line start.
func definitionEnd(lines []string, start int) int {
	depth, opened := 0, false
	inBlock := false
	for i := start; i < len(lines); i++ {
		l := lines[i]
		for j := 0; j < len(l); j++ {
			switch {
			case inBlock:
				if strings.HasPrefix(l[j:], "*/") {
					inBlock = false
					j++
				}
			case strings.HasPrefix(l[j:], "//"):
				j = len(l)
			case strings.HasPrefix(l[j:], "/*"):
				inBlock = true
				j++
			case l[j] == '{':
				depth++
				opened = true
			case l[j] == '}':
				depth--
				if opened && depth == 0 {
					return i
				}
			}
		}
	}
	return len(lines) - 1
}

// Compose joins the system schema with the app part. An app definition that
// repeats a system definition unchanged is dropped; a changed one is refused
// with a *trellis.RuleError naming it. `use` directives are hoisted and deduplicated.
func Compose(appText string) (*Composed, error) {
	app, err := compile("app", appText)
	if err != nil {
		return nil, parseProblem(err)
	}
	lines := strings.Split(appText, "\n")
	uses := []string{}
	for _, m := range useLine.FindAllStringSubmatch(SystemText+"\n"+appText, -1) {
		if !slices.Contains(uses, m[1]) {
			uses = append(uses, m[1])
		}
	}
	for i, l := range lines {
		if useLine.MatchString(l) {
			lines[i] = ""
		}
	}
	for _, d := range app.ObjectDefinitions {
		sys, ok := systemDefs[d.Name]
		if !ok {
			continue
		}
		if !sameDefinition(sys, d) {
			return nil, &trellis.RuleError{Code: "system_definition_changed", Message: fmt.Sprintf("definition %q is part of the system schema and cannot be changed", d.Name)}
		}
		if start := definitionLine(lines, d.Name); start >= 0 {
			blank(lines, start, definitionEnd(lines, start))
		}
	}
	var b strings.Builder
	for _, u := range uses {
		b.WriteString("use " + u + "\n")
	}
	sys := useLine.ReplaceAllString(SystemText, "")
	b.WriteString(strings.TrimRight(sys, "\n"))
	b.WriteString("\n\n")
	offset := strings.Count(b.String(), "\n")
	b.WriteString(strings.Join(lines, "\n"))
	return &Composed{Text: b.String(), AppText: appText, appOffset: offset}, nil
}

// definitionLine finds the line declaring `definition name`.
func definitionLine(lines []string, name string) int {
	re := regexp.MustCompile(`^\s*definition\s+` + regexp.QuoteMeta(name) + `\s*\{?`)
	for i, l := range lines {
		if re.MatchString(l) {
			return i
		}
	}
	return -1
}

// sameDefinition compares two definitions ignoring comments.
func sameDefinition(a, b *core.NamespaceDefinition) bool {
	d, err := nsdiff.DiffNamespaces(a, b)
	if err != nil {
		return false
	}
	for _, delta := range d.Deltas() {
		switch delta.Type {
		case nsdiff.NamespaceCommentsChanged, nsdiff.ChangedPermissionComment, nsdiff.ChangedRelationComment:
		default:
			return false
		}
	}
	return true
}

// parseProblem turns a compiler error into a validation error naming "text".
func parseProblem(err error) error {
	p := compileProblem(err, 0)
	return &trellis.ValidationError{Field: "text", Message: fmt.Sprintf("line %d, column %d: %s", p.Line, p.Column, p.Message)}
}

// Validate compiles and type-checks the app part composed with the system
// schema, reporting problems at the app text's own line and column.
func Validate(ctx context.Context, appText string) []Problem {
	if _, err := compile("app", appText); err != nil {
		return []Problem{compileProblem(err, 0)}
	}
	c, err := Compose(appText)
	if err != nil {
		return []Problem{{Line: 1, Column: 1, Message: err.Error()}}
	}
	return c.Check(ctx)
}

// Check type-checks a composed schema with SpiceDB's developer context.
func (c *Composed) Check(ctx context.Context) []Problem {
	dev, devErrs, err := development.NewDevContext(ctx, &devinterface.RequestContext{Schema: c.Text})
	if err != nil {
		return []Problem{{Line: 1, Column: 1, Message: err.Error()}}
	}
	if dev != nil {
		dev.Dispose()
	}
	if devErrs == nil {
		return nil
	}
	var out []Problem
	for _, e := range devErrs.InputErrors {
		line := int(e.Line) - c.appOffset
		if line < 1 {
			line = 1
		}
		out = append(out, Problem{Line: line, Column: int(e.Column), Message: e.Message})
	}
	return out
}

// compileProblem extracts the position of a compiler error.
func compileProblem(err error, offset int) Problem {
	p := Problem{Line: 1, Column: 1, Message: err.Error()}
	var ce compiler.WithContextError
	if errors.As(err, &ce) {
		if line, col, lerr := ce.SourceRange.Start().LineAndColumn(); lerr == nil {
			p.Line, p.Column = line+1-offset, col+1
		}
		p.Message = ce.BaseMessage
	}
	return p
}

// appPart regenerates the provider's part of a stored composed schema.
func appPart(ctx context.Context, composed string) (string, error) {
	cs, err := compile("stored", composed)
	if err != nil {
		return "", fmt.Errorf("schema: compile stored schema: %w", err)
	}
	var defs []compiler.SchemaDefinition
	for _, d := range cs.OrderedDefinitions {
		if ns, ok := d.(*core.NamespaceDefinition); ok && IsSystemDefinition(ns.Name) {
			continue
		}
		if cv, ok := d.(*core.CaveatDefinition); ok && systemCaveats[cv.Name] {
			continue // composing puts it back
		}
		defs = append(defs, d)
	}
	text, _, err := generator.GenerateSchema(ctx, defs)
	if err != nil {
		return "", fmt.Errorf("schema: regenerate app part: %w", err)
	}
	return text, nil
}
