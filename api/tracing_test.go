package api_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// With a tracer, a request is a server span (joining the caller's trace by
// traceparent) with the cache, engine and store spans beneath it.
func TestTracingSpans(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:d1", "owner", "user:ann"))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("test")

	cached, err := engine.NewCached(context.Background(), engine.Trace(h.eng, tracer, "engine"), engine.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cached.Close)
	graph := engine.Trace(cached, tracer, "cache")
	if _, ok := graph.(engine.Stamper); !ok {
		t.Fatal("the traced cache lost its Stamper")
	}
	dir, err := directory.New(directory.Deps{Store: store.Trace(memory.New(), tracer), Graph: graph}, directory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	name := "app"
	k, err := dir.CreateProviderKey(context.Background(), directory.Provider("test"), directory.CreateProviderKey{Name: &name, Scopes: []string{"check"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Deps{Engine: graph, Directory: dir, AdminKey: testKey, Tracer: tracer})
	exp.Reset()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body := `{"resource":"document:d1","permission":"view","subject":"user:ann"}`
	rec := serveDirect(t, srv, "POST", "/v1/check", body, map[string]string{"Authorization": "Bearer " + k.Secret,
		"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01", "X-Request-Id": "traced-1"})
	if rec.Code != 200 {
		t.Fatalf("check: %d %s", rec.Code, rec.Body)
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
		if got := s.SpanContext.TraceID().String(); got != traceID {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, got, traceID)
		}
	}
	for _, want := range []string{"POST /v1/check", "cache.Check", "engine.Check", "store.Read"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("no span %q among %d spans", want, len(spans))
		}
	}
	root, cache, eng := byName["POST /v1/check"], byName["cache.Check"], byName["engine.Check"]
	if cache.Parent.SpanID() != root.SpanContext.SpanID() || eng.Parent.SpanID() != cache.SpanContext.SpanID() {
		t.Errorf("span tree: cache's parent %s (want %s), engine's parent %s (want %s)", cache.Parent.SpanID(), root.SpanContext.SpanID(),
			eng.Parent.SpanID(), cache.SpanContext.SpanID())
	}
	if !hasAttr(root.Attributes, attribute.String("trellis.request_id", "traced-1")) || !hasAttr(root.Attributes, attribute.Int("http.response.status_code", 200)) {
		t.Errorf("server span attributes: %v", root.Attributes)
	}

	// answered by the cache: no engine span, the key from memory
	exp.Reset()
	serveDirect(t, srv, "POST", "/v1/check", body, map[string]string{"Authorization": "Bearer " + k.Secret})
	names := map[string]bool{}
	for _, s := range exp.GetSpans() {
		names[s.Name] = true
		if s.Name == "cache.Check" && !hasAttr(s.Attributes, attribute.Bool("trellis.cached", true)) {
			t.Errorf("cache span of a hit: %v", s.Attributes)
		}
	}
	if names["engine.Check"] || names["store.Read"] || !names["cache.Check"] {
		t.Errorf("spans of a cached check by a cached key: %v", names)
	}
}

func hasAttr(list []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, a := range list {
		if a == want {
			return true
		}
	}
	return false
}
