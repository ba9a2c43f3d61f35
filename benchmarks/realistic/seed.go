package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// parallel runs fn(0..n-1) on workers goroutines and returns the first error
// (the others stop at their next item).
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// appSchema is the app schema for Trellis: documents anchored to an
// organization, so that a write to one stays in its tenant.
const appSchema = `definition document {
	relation org: organization
	relation viewer: user
	permission view = viewer + org->access
}`

// seedTrellis writes the app schema, then the organizations (root, 3 children,
// 6 leaves a tenant), users and memberships through the directory's endpoints
// (so the check cache knows the tenants), then the documents as raw writes of
// 1,000 relationships.
func seedTrellis(ctx context.Context, t *target, s dataset, clients int) error {
	if err := t.call("PUT", "/v1/schema", map[string]any{"text": appSchema}, nil); err != nil {
		return err
	}
	leafIDs := make([]string, s.leaves())
	rootIDs := make([]string, s.tenants)
	org := func(slug, parent string) (string, error) {
		body := map[string]any{"name": slug, "slug": slug}
		if parent != "" {
			body["parent"] = parent
		}
		var out struct {
			ID string `json:"id"`
		}
		err := t.call("POST", "/v1/organizations", body, &out)
		return out.ID, err
	}
	phase := time.Now()
	err := parallel(ctx, s.tenants, clients, func(tn int) error {
		root, err := org(fmt.Sprintf("t%d", tn), "")
		if err != nil {
			return err
		}
		rootIDs[tn] = root
		for c := range 3 {
			child, err := org(fmt.Sprintf("t%d-c%d", tn, c), root)
			if err != nil {
				return err
			}
			for k := range 2 {
				leaf := tn*leavesPerTenant + 2*c + k
				if leafIDs[leaf], err = org(fmt.Sprintf("t%d-l%d", tn, 2*c+k), child); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("  organizations: %d in %v\n", s.tenants*10, time.Since(phase).Round(time.Millisecond))
	phase = time.Now()
	err = parallel(ctx, s.users, clients, func(u int) error {
		id := fmt.Sprintf("u%d", u)
		if err := t.call("POST", "/v1/users", map[string]any{"id": id, "email": id + "@realistic.example"}, nil); err != nil {
			return err
		}
		if err := t.call("PUT", "/v1/organizations/"+leafIDs[s.userLeaf(u)]+"/members/"+id, map[string]any{"roles": []string{"member"}}, nil); err != nil {
			return err
		}
		if tn := s.adminOf(u); tn >= 0 {
			return t.call("PUT", "/v1/organizations/"+rootIDs[tn]+"/members/"+id, map[string]any{"roles": []string{"admin"}}, nil)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("  users and memberships: %d in %v\n", s.users, time.Since(phase).Round(time.Millisecond))
	phase = time.Now()
	type update map[string]any
	rel := func(resource, relation, subject string) update {
		return update{"operation": "touch", "relationship": map[string]string{"resource": resource, "relation": relation, "subject": subject}}
	}
	const batch = 1000 // engine.MaxUpdatesPerWrite
	err = parallel(ctx, (s.docs+batch-1)/batch, clients, func(b int) error {
		var updates []update
		for d := b * batch; d < min((b+1)*batch, s.docs); d++ {
			doc := fmt.Sprintf("document:d%d", d)
			updates = append(updates, rel(doc, "org", "organization:"+leafIDs[s.docLeaf(d)]))
			if v := s.viewer(d); v >= 0 {
				updates = append(updates, rel(doc, "viewer", fmt.Sprintf("user:u%d", v)))
			}
		}
		for len(updates) > 0 { // a batch with viewers holds more than 1,000
			n := min(len(updates), batch)
			if err := t.call("POST", "/v1/relationships/write", map[string]any{"updates": updates[:n]}, nil); err != nil {
				return err
			}
			updates = updates[n:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("  documents: %d in %v\n", s.docs, time.Since(phase).Round(time.Millisecond))
	return nil
}

// seedOpenFGA writes the same graph as tuples through OpenFGA's HTTP write
// API, 100 a request (its default limit), into the store openfga-serve made.
func seedOpenFGA(ctx context.Context, t *target, s dataset, clients int) error {
	all := openfgaTuples(s)
	const batch = 100
	// more than a few writes at once on the servers' one CPU and OpenFGA's
	// own request deadline cuts them (deadline_exceeded: run 24's first try)
	clients = min(clients, maxOpenFGASeedClients)
	return parallel(ctx, (len(all)+batch-1)/batch, clients, func(b int) error {
		body := map[string]any{
			"authorization_model_id": t.model,
			"writes":                 map[string]any{"tuple_keys": all[b*batch : min((b+1)*batch, len(all))]},
		}
		return t.call("POST", "/stores/"+t.store+"/write", body, nil)
	})
}

// spicedbSchema is benchmarks/openfga's model (the openfga-postgres arm's) as
// a SpiceDB schema, relation for relation: a parent's manage flows to its
// children, access is membership or manage, a document is viewed by its
// viewers and by whoever has access to its organization.
const spicedbSchema = `definition user {}

definition organization {
	relation parent: organization
	relation admin: user
	relation member: user
	permission manage = admin + parent->manage
	permission access = member + manage
}

definition document {
	relation org: organization
	relation viewer: user
	permission view = viewer + org->access
	permission edit = org->manage
}`

// SpiceDB's REST API (its HTTP gateway's JSON of authzed.api.v1).
type (
	spicedbObject struct {
		ObjectType string `json:"objectType"`
		ObjectID   string `json:"objectId"`
	}
	spicedbSubject struct {
		Object spicedbObject `json:"object"`
	}
	spicedbRelationship struct {
		Resource spicedbObject  `json:"resource"`
		Relation string         `json:"relation"`
		Subject  spicedbSubject `json:"subject"`
	}
	spicedbUpdate struct {
		Operation    string              `json:"operation"`
		Relationship spicedbRelationship `json:"relationship"`
	}
)

// spicedbRef is an object "type:id" in SpiceDB's JSON.
func spicedbRef(ref string) spicedbObject {
	typ, id, _ := strings.Cut(ref, ":")
	return spicedbObject{typ, id}
}

// asSpiceDB is an OpenFGA tuple as a SpiceDB relationship: the object is the
// resource, the user the subject.
func (x tuple) asSpiceDB() spicedbRelationship {
	return spicedbRelationship{Resource: spicedbRef(x.Object), Relation: x.Relation, Subject: spicedbSubject{spicedbRef(x.User)}}
}

// seedSpiceDB writes spicedbSchema, then the openfga arm's tuples as
// relationships through SpiceDB's HTTP gateway, 1,000 touches a request
// (spicedb serve's default limit).
func seedSpiceDB(ctx context.Context, t *target, s dataset, clients int) error {
	if err := t.call("POST", "/v1/schema/write", map[string]string{"schema": spicedbSchema}, nil); err != nil {
		return err
	}
	all := openfgaTuples(s)
	const batch = 1000
	return parallel(ctx, (len(all)+batch-1)/batch, clients, func(b int) error {
		var updates []spicedbUpdate
		for _, x := range all[b*batch : min((b+1)*batch, len(all))] {
			updates = append(updates, spicedbUpdate{"OPERATION_TOUCH", x.asSpiceDB()})
		}
		return t.call("POST", "/v1/relationships/write", map[string]any{"updates": updates}, nil)
	})
}

// spicedbQuantization is the spicedb-postgres arm's revision quantization,
// SpiceDB's default.
const spicedbQuantization = 5 * time.Second

// awaitSpiceDBSeed returns once minimizeLatency checks see the whole seed:
// SpiceDB answers them at a quantized revision that may predate writes of
// the last quantization interval (Trellis never reads older than its own
// last write), so the checks would start on a partial graph. A marker
// relationship, written after every seed write has returned and outside the
// data (no check names document:seeded), is polled for with minimizeLatency:
// the revision that shows it shows all the writes committed before it. Other
// requests may still be given an older cached revision for up to 10 % of the
// quantization (SpiceDB's staleness jitter), so the wait goes on for one more
// interval after the marker shows.
func awaitSpiceDBSeed(ctx context.Context, t *target) (time.Duration, error) {
	start := time.Now()
	marker := spicedbUpdate{"OPERATION_TOUCH", tuple{"user:seeded", "viewer", "document:seeded"}.asSpiceDB()}
	if err := t.call("POST", "/v1/relationships/write", map[string]any{"updates": []spicedbUpdate{marker}}, nil); err != nil {
		return 0, err
	}
	path, body := spicedbCheck("seeded", "user", "seeded", "", false)
	for deadline := start.Add(time.Minute); time.Now().Before(deadline); {
		resp, err := t.do("POST", path, body)
		if err != nil {
			return 0, err
		}
		if isAllowed(resp) {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(spicedbQuantization):
			}
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond): // polling the quantized revision
		}
	}
	return 0, errors.New("minimizeLatency checks did not see the seed within a minute")
}

// maxOpenFGASeedClients bounds the concurrent writes seeding OpenFGA.
const maxOpenFGASeedClients = 8

type tuple struct {
	User     string `json:"user"`
	Relation string `json:"relation"`
	Object   string `json:"object"`
}

// openfgaTuples is the dataset as OpenFGA tuples. Organization ids are names
// (t<tenant>, t<tenant>-c<child>, t<tenant>-l<leaf>) where Trellis has
// generated ids: the checks name only users and documents, which are the same.
func openfgaTuples(s dataset) []tuple {
	leaf := func(l int) string {
		return fmt.Sprintf("organization:t%d-l%d", l/leavesPerTenant, l%leavesPerTenant)
	}
	var all []tuple
	for tn := range s.tenants {
		root := fmt.Sprintf("organization:t%d", tn)
		for c := range 3 {
			child := fmt.Sprintf("organization:t%d-c%d", tn, c)
			all = append(all, tuple{root, "parent", child})
			for k := range 2 {
				all = append(all, tuple{child, "parent", leaf(tn*leavesPerTenant + 2*c + k)})
			}
		}
	}
	for u := range s.users {
		all = append(all, tuple{fmt.Sprintf("user:u%d", u), "member", leaf(s.userLeaf(u))})
		if tn := s.adminOf(u); tn >= 0 {
			all = append(all, tuple{fmt.Sprintf("user:u%d", u), "admin", fmt.Sprintf("organization:t%d", tn)})
		}
	}
	for d := range s.docs {
		doc := fmt.Sprintf("document:d%d", d)
		all = append(all, tuple{leaf(s.docLeaf(d)), "org", doc})
		if v := s.viewer(d); v >= 0 {
			all = append(all, tuple{fmt.Sprintf("user:u%d", v), "viewer", doc})
		}
	}
	return all
}
