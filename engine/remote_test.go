package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/authzed/grpcutil"

	"github.com/trellis-iam/trellis"
	. "github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// startServer runs SpiceDB's own server on a loopback port with a fresh key.
// quantization is SpiceDB's minimizeLatency window.
func startServer(t testing.TB, quantization time.Duration) (*Server, string) {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	key := "sdb_" + hex.EncodeToString(b)
	srv, err := StartServer(context.Background(), ServerConfig{
		EmbeddedConfig: EmbeddedConfig{RevisionQuantization: quantization},
		PresharedKey:   key,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return srv, key
}

func dial(t testing.TB, srv *Server, key string) *Remote {
	t.Helper()
	r, err := Dial(context.Background(), RemoteConfig{Endpoint: srv.Addr(), Token: key, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestEngineSuiteEmbedded(t *testing.T) {
	runEngineSuite(t, func(t *testing.T) Engine {
		e, err := StartEmbedded(context.Background(), EmbeddedConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	})
}

// TestEngineSuiteRemote: the same behaviours over a SpiceDB server on a TCP
// port, reached with a bearer token (remote mode).
func TestEngineSuiteRemote(t *testing.T) {
	runEngineSuite(t, func(t *testing.T) Engine {
		srv, key := startServer(t, time.Second)
		return dial(t, srv, key)
	})
}

func wantValidation(t *testing.T, err error, field string) {
	t.Helper()
	var ve *trellis.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a validation error on %q, got %v", field, err)
	}
	if ve.Field != field {
		t.Errorf("validation error on field %q (%s), want %q", ve.Field, ve.Message, field)
	}
}

func find(rels []Relationship, r Relationship) (Relationship, bool) {
	for _, x := range rels {
		if x.String() == r.String() {
			return x, true
		}
	}
	return Relationship{}, false
}

// runEngineSuite checks the Engine contract the rest of Trellis relies on.
func runEngineSuite(t *testing.T, newEngine func(t *testing.T) Engine) {
	ctx := context.Background()
	e := newEngine(t)
	composed, err := schema.Compose(diffApp)
	if err != nil {
		t.Fatal(err)
	}
	if !t.Run("schema", func(t *testing.T) {
		if text, err := e.ReadSchema(ctx); err != nil || text != "" {
			t.Fatalf("empty engine: schema %q, %v", text, err)
		}
		if tok, err := e.WriteSchema(ctx, composed.Text); err != nil || tok == "" {
			t.Fatalf("write schema: %q, %v", tok, err)
		}
		text, err := e.ReadSchema(ctx)
		if err != nil || !strings.Contains(text, "definition document") {
			t.Fatalf("read schema: %v\n%s", err, text)
		}
		_, err = e.WriteSchema(ctx, "definition broken {")
		wantValidation(t, err, "text")
		if err := e.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}) {
		t.FailNow()
	}

	t.Run("relationships", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
		cav := mkRel("document:rel1", "viewer", "user:cav")
		cav.Caveat = &Caveat{Name: "level_at_least", Context: map[string]any{"required": 3}}
		ttl := mkRel("document:rel1", "viewer", "user:ttl")
		ttl.ExpiresAt = &exp
		plain := mkRel("document:rel1", "org", "organization:relorg")
		if tok := write(t, e, OpTouch, cav, ttl, plain); tok == "" {
			t.Fatal("a write returned no token")
		}
		page, err := e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document", ResourceID: "rel1"}})
		if err != nil || len(page.Relationships) != 3 || page.ReadAt == "" {
			t.Fatalf("read back: %+v, %v", page, err)
		}
		if got, ok := find(page.Relationships, cav); !ok || got.Caveat == nil || got.Caveat.Name != "level_at_least" || got.Caveat.Context["required"] != float64(3) {
			t.Errorf("caveat not read back: %+v", got.Caveat)
		}
		if got, ok := find(page.Relationships, ttl); !ok || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
			t.Errorf("expiration not read back: %v, want %v", got.ExpiresAt, exp)
		}
		first, err := e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document", ResourceID: "rel1"}, PageSize: 2})
		if err != nil || len(first.Relationships) != 2 || first.NextCursor == "" {
			t.Fatalf("first page: %+v, %v", first, err)
		}
		second, err := e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document", ResourceID: "rel1"}, PageSize: 2, Cursor: first.NextCursor})
		if err != nil || len(second.Relationships) != 1 {
			t.Fatalf("second page: %+v, %v", second, err)
		}
		bySubject, err := e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document", Subject: &SubjectFilter{Type: "user", ID: "cav"}}})
		if err != nil || len(bySubject.Relationships) != 1 {
			t.Fatalf("by subject: %+v, %v", bySubject, err)
		}
		if _, err := e.WriteRelationships(ctx, []RelationshipUpdate{{Operation: OpCreate, Relationship: plain}}); !errors.Is(err, trellis.ErrConflict) {
			t.Errorf("creating an existing relationship: %v, want a conflict", err)
		}
		write(t, e, OpDelete, cav)
		write(t, e, OpDelete, cav) // deleting what is not there is not an error
		page, err = e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document", ResourceID: "rel1"}})
		if _, still := find(page.Relationships, cav); err != nil || still || len(page.Relationships) != 2 {
			t.Fatalf("after delete: %+v, %v", page, err)
		}
	})

	ann := checkOf("document:chk", "view", "user:ann")
	stranger := checkOf("document:chk", "view", "user:stranger")
	cv := checkOf("document:chk", "view", "user:cv")
	cavRel := mkRel("document:chk", "viewer", "user:cv")
	cavRel.Caveat = &Caveat{Name: "level_at_least", Context: map[string]any{"required": 3}}
	write(t, e, OpTouch,
		mkRel("organization:co1", "member", "user:ann"),
		mkRel("document:chk", "org", "organization:co1"),
		mkRel("document:lk1", "org", "organization:co1"),
		mkRel("document:lk2", "org", "organization:co1"),
		mkRel("document:lk3", "org", "organization:co1"),
		cavRel,
	)

	t.Run("check", func(t *testing.T) {
		if r := mustCheck(t, e, ann); r.Permissionship != HasPermission || r.CheckedAt == "" || r.Cached {
			t.Errorf("member through the org: %+v", r)
		}
		if r := mustCheck(t, e, stranger); r.Permissionship != NoPermission {
			t.Errorf("stranger: %+v", r)
		}
		if r := mustCheck(t, e, cv); r.Permissionship != Conditional || !slices.Contains(r.MissingContext, "level") {
			t.Errorf("caveat without context: %+v", r)
		}
		for level, want := range map[int64]Permissionship{1: NoPermission, 4: HasPermission} {
			q := cv
			q.Context = map[string]any{"level": level}
			if r := mustCheck(t, e, q); r.Permissionship != want {
				t.Errorf("level %d: %+v, want %s", level, r, want)
			}
		}
	})

	t.Run("bulk", func(t *testing.T) {
		res, err := e.CheckBulk(ctx, []CheckRequest{ann, stranger, cv})
		if err != nil {
			t.Fatal(err)
		}
		got := []Permissionship{res[0].Permissionship, res[1].Permissionship, res[2].Permissionship}
		if !slices.Equal(got, []Permissionship{HasPermission, NoPermission, Conditional}) || res[0].CheckedAt == "" {
			t.Errorf("bulk: %+v", res)
		}
		bad := checkOf("document:chk", "no_such_permission", "user:ann")
		_, err = e.CheckBulk(ctx, []CheckRequest{ann, bad})
		wantValidation(t, err, "items[1].permission")
	})

	t.Run("lookups", func(t *testing.T) {
		var ids []string
		cursor := ""
		for pages := 0; pages < 10; pages++ {
			page, err := e.LookupResources(ctx, LookupResourcesRequest{ResourceType: "document", Permission: "view", Subject: ann.Subject, PageSize: 1, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Resources {
				ids = append(ids, r.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if !slices.Equal(ids, []string{"chk", "lk1", "lk2", "lk3"}) {
			t.Errorf("paged lookup of ann's documents: %v", ids)
		}
		subs, err := e.LookupSubjects(ctx, LookupSubjectsRequest{Resource: ann.Resource, Permission: "view", SubjectType: "user"})
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]Permissionship{}
		for _, s := range subs {
			found[s.ID] = s.Permissionship
		}
		if found["ann"] != HasPermission || found["cv"] != Conditional || found["stranger"] != "" {
			t.Errorf("subjects of document:chk: %v", found)
		}
	})

	t.Run("explain", func(t *testing.T) {
		x, err := e.Explain(ctx, ann)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"document:chk#org@organization:co1", "organization:co1#member@user:ann"}
		ok := false
		for _, p := range x.Paths {
			var got []string
			for _, r := range p {
				got = append(got, r.String())
			}
			ok = ok || slices.Equal(got, want)
		}
		if x.Permissionship != HasPermission || !ok {
			t.Errorf("explain ann: %+v, want a path %v", x, want)
		}
		if x, err := e.Explain(ctx, stranger); err != nil || x.Permissionship != NoPermission || len(x.Paths) != 0 {
			t.Errorf("explain stranger: %+v, %v", x, err)
		}
	})

	t.Run("consistency", func(t *testing.T) {
		q := checkOf("document:cons", "view", "user:cz")
		tok := write(t, e, OpTouch, mkRel("document:cons", "viewer", "user:cz"))
		q.Consistency = Consistency{Mode: AtLeastAsFresh, Token: tok}
		if r := mustCheck(t, e, q); !r.Allowed() {
			t.Errorf("atLeastAsFresh(write token): %+v", r)
		}
		q.Consistency = Consistency{Mode: FullyConsistent}
		if r := mustCheck(t, e, q); !r.Allowed() {
			t.Errorf("fullyConsistent: %+v", r)
		}
		write(t, e, OpDelete, mkRel("document:cons", "viewer", "user:cz"))
		q.Consistency = Consistency{}
		if r := mustCheck(t, e, q); r.Allowed() {
			t.Errorf("minimizeLatency right after a revocation (read-your-writes): %+v", r)
		}
	})

	// one directory operation is one write: MaxAtomicUpdates updates in one call
	// (SpiceDB's default limit is 1,000; the servers Trellis starts raise it)
	t.Run("atomic write of MaxAtomicUpdates", func(t *testing.T) {
		big := make([]Relationship, MaxAtomicUpdates)
		for i := range big {
			big[i] = mkRel("document:big", "viewer", fmt.Sprintf("user:b%d", i))
		}
		write(t, e, OpTouch, big...)
		got, err := ReadAll(ctx, e, RelationshipFilter{ResourceType: "document", ResourceID: "big"}, 0)
		if err != nil || len(got) != MaxAtomicUpdates {
			t.Fatalf("read back %d of %d relationships: %v", len(got), MaxAtomicUpdates, err)
		}
		write(t, e, OpDelete, big...)
	})

	t.Run("errors", func(t *testing.T) {
		_, err := e.Check(ctx, checkOf("nosuchtype:x", "view", "user:ann"))
		wantValidation(t, err, "resource")
		_, err = e.Check(ctx, checkOf("document:chk", "no_such_permission", "user:ann"))
		wantValidation(t, err, "permission")
		_, err = e.WriteRelationships(ctx, []RelationshipUpdate{{Operation: OpTouch, Relationship: mkRel("document:chk", "no_such_relation", "user:ann")}})
		wantValidation(t, err, "updates[0].relationship.relation")
		_, err = e.WriteRelationships(ctx, make([]RelationshipUpdate, MaxAtomicUpdates+1))
		wantValidation(t, err, "updates")
		_, err = e.ReadRelationships(ctx, ReadRequest{Filter: RelationshipFilter{ResourceType: "document"}, Cursor: "garbage"})
		var ve *trellis.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("a garbage cursor: %v", err)
		}
	})
}

func TestRemoteConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   RemoteConfig
		field string
	}{
		{RemoteConfig{Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: "spicedb", Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: ":50051", Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: "spicedb:http", Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: "spicedb:70000", Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: "grpc://spicedb:50051", Token: "k"}, "spicedbEndpoint"},
		{RemoteConfig{Endpoint: "spicedb:50051"}, "spicedbToken"},
		{RemoteConfig{Endpoint: "spicedb:50051", Token: "k", Insecure: true, CACert: "ca.pem"}, "spicedbCACert"},
	} {
		err := c.cfg.Validate()
		var ve *trellis.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%+v: %v, want a validation error on %s", c.cfg, err, c.field)
		}
	}
	for _, ok := range []RemoteConfig{
		{Endpoint: "spicedb.internal:50051", Token: "k"},
		{Endpoint: "[::1]:50051", Token: "k", Insecure: true},
		{Endpoint: "10.0.0.7:443", Token: "k", CACert: "/etc/ssl/spicedb-ca.pem"},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	if _, err := Dial(context.Background(), RemoteConfig{Endpoint: "localhost:50051", Token: "k", CACert: "/no/such/ca.pem"}); err == nil {
		t.Error("dial with a missing CA file succeeded")
	}
}

// TestRemoteBadToken: a wrong token fails Dial at once with a clear message,
// and at runtime it is an unavailable engine (503), not the API caller's 401.
func TestRemoteBadToken(t *testing.T) {
	srv, _ := startServer(t, time.Second)
	start := time.Now()
	_, err := Dial(context.Background(), RemoteConfig{Endpoint: srv.Addr(), Token: "wrong", Insecure: true})
	if err == nil || !errors.Is(err, trellis.ErrUnavailable) || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("dial with a wrong token: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a refused token took %v to report", d)
	}
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpcutil.WithInsecureBearerToken("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = NewSpiceDB(conn).Check(context.Background(), checkOf("document:a", "view", "user:a"))
	if !errors.Is(err, trellis.ErrUnavailable) || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("check with a wrong token: %v", err)
	}
}

// TestRemoteUnreachable: nothing listening fails Dial within its timeout.
func TestRemoteUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = Dial(context.Background(), RemoteConfig{Endpoint: addr, Token: "k", Insecure: true, ConnectTimeout: 500 * time.Millisecond})
	if !errors.Is(err, trellis.ErrUnavailable) || !strings.Contains(err.Error(), "did not answer within") {
		t.Fatalf("dial to a closed port: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("dial to a closed port took %v", d)
	}
}

// TestRemoteServerStopped: once SpiceDB is gone, checks, writes and cached
// answers alike are unavailable (503).
func TestRemoteServerStopped(t *testing.T) {
	srv, key := startServer(t, time.Second)
	r := dial(t, srv, key)
	ctx := context.Background()
	composed, err := schema.Compose(diffApp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteSchema(ctx, composed.Text); err != nil {
		t.Fatal(err)
	}
	c, err := NewCached(ctx, r, CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	twoTenants(t, c)
	hot := checkOf("document:a", "view", "user:alice")
	mustCheck(t, c, hot)
	if res := mustCheck(t, c, hot); !res.Cached || !res.Allowed() {
		t.Fatalf("setup: want a cached allow, got %+v", res)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Check(ctx, checkOf("document:a", "view", "user:nobody")); !errors.Is(err, trellis.ErrUnavailable) {
		t.Errorf("check with the server stopped: %v", err)
	}
	if _, err := r.WriteRelationships(ctx, []RelationshipUpdate{{Operation: OpTouch, Relationship: mkRel("document:a", "viewer", "user:x")}}); !errors.Is(err, trellis.ErrUnavailable) {
		t.Errorf("write with the server stopped: %v", err)
	}
	// The channel retries in the background (TransientFailure, Idle,
	// Connecting, with backoff near 1 s): no state along the way may serve
	// the cached answer.
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if res, err := c.Check(ctx, hot); err == nil {
			t.Fatalf("a cached answer was served with the server stopped: %+v", res)
		}
	}
	if err := r.Ready(ctx); !errors.Is(err, trellis.ErrUnavailable) {
		t.Errorf("ready with the server stopped: %v", err)
	}
}
