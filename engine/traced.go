package engine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace wraps e so that every check, lookup, explain and relationship read
// or write is an OpenTelemetry span named "<layer>.<Method>" (ADR 0014): the
// check cache is traced as layer "cache" and SpiceDB beneath it as "engine",
// so a trace shows whether an answer needed SpiceDB. The decorator keeps
// what e offers besides Engine: a Watcher stays a Watcher, a Stamper a
// Stamper, and reachability is forwarded.
func Trace(e Engine, t trace.Tracer, layer string) Engine {
	tr := &traced{Engine: e, tracer: t, layer: layer}
	switch e.(type) {
	case Watcher:
		return tracedWatcher{tr}
	case Stamper:
		return tracedStamper{tr}
	}
	return tr
}

type traced struct {
	Engine
	tracer trace.Tracer
	layer  string
}

type tracedWatcher struct{ *traced }

func (t tracedWatcher) Watch(ctx context.Context, cursor string, fn func(WatchEvent) error) error {
	return t.Engine.(Watcher).Watch(ctx, cursor, fn)
}

func (t tracedWatcher) CatchUp(ctx context.Context) (string, error) {
	return t.Engine.(Watcher).CatchUp(ctx)
}

type tracedStamper struct{ *traced }

func (t tracedStamper) Stamp(obj ObjectRef) string { return t.Engine.(Stamper).Stamp(obj) }

var (
	_ Watcher = tracedWatcher{}
	_ Stamper = tracedStamper{}
)

// Reachable forwards the wrapped engine's answer (true when it cannot tell).
// WrittenElsewhere is forwarded to an engine that takes it (the cache).
func (t *traced) WrittenElsewhere(ctx context.Context, updates []RelationshipUpdate, filters []RelationshipFilter) error {
	if w, ok := t.Engine.(ElsewhereWriter); ok {
		return w.WrittenElsewhere(ctx, updates, filters)
	}
	return nil
}

func (t *traced) Reachable() bool {
	if r, ok := t.Engine.(reachability); ok {
		return r.Reachable()
	}
	return true
}

func (t *traced) start(ctx context.Context, method string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, t.layer+"."+method, trace.WithAttributes(attrs...))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (t *traced) Check(ctx context.Context, req CheckRequest) (CheckResult, error) {
	ctx, span := t.start(ctx, "Check", attribute.String("trellis.resource", req.Resource.String()),
		attribute.String("trellis.permission", req.Permission), attribute.String("trellis.subject", req.Subject.String()))
	res, err := t.Engine.Check(ctx, req)
	span.SetAttributes(attribute.String("trellis.permissionship", string(res.Permissionship)), attribute.Bool("trellis.cached", res.Cached))
	end(span, err)
	return res, err
}

func (t *traced) CheckBulk(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error) {
	ctx, span := t.start(ctx, "CheckBulk", attribute.Int("trellis.items", len(reqs)))
	res, err := t.Engine.CheckBulk(ctx, reqs)
	end(span, err)
	return res, err
}

func (t *traced) LookupResources(ctx context.Context, req LookupResourcesRequest) (LookupResourcesPage, error) {
	ctx, span := t.start(ctx, "LookupResources", attribute.String("trellis.resource_type", req.ResourceType), attribute.String("trellis.permission", req.Permission))
	res, err := t.Engine.LookupResources(ctx, req)
	end(span, err)
	return res, err
}

func (t *traced) LookupSubjects(ctx context.Context, req LookupSubjectsRequest) ([]FoundObject, error) {
	ctx, span := t.start(ctx, "LookupSubjects", attribute.String("trellis.resource", req.Resource.String()), attribute.String("trellis.permission", req.Permission))
	res, err := t.Engine.LookupSubjects(ctx, req)
	end(span, err)
	return res, err
}

func (t *traced) Explain(ctx context.Context, req CheckRequest) (Explanation, error) {
	ctx, span := t.start(ctx, "Explain", attribute.String("trellis.resource", req.Resource.String()), attribute.String("trellis.permission", req.Permission))
	res, err := t.Engine.Explain(ctx, req)
	end(span, err)
	return res, err
}

func (t *traced) WriteRelationships(ctx context.Context, updates []RelationshipUpdate) (string, error) {
	ctx, span := t.start(ctx, "WriteRelationships", attribute.Int("trellis.updates", len(updates)))
	tok, err := t.Engine.WriteRelationships(ctx, updates)
	end(span, err)
	return tok, err
}

func (t *traced) ReadRelationships(ctx context.Context, req ReadRequest) (ReadPage, error) {
	ctx, span := t.start(ctx, "ReadRelationships", attribute.String("trellis.resource_type", req.Filter.ResourceType))
	res, err := t.Engine.ReadRelationships(ctx, req)
	end(span, err)
	return res, err
}
