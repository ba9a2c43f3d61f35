package main

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/trellis-iam/trellis/engine"
)

// The truth the run checks every answer against: computed from the indexes,
// so it must agree with the tuples the seeders write.
func TestTruthMatchesTuples(t *testing.T) {
	s := dataset{tenants: 3, users: 40, docs: 50}
	tuples := openfgaTuples(s)
	if len(tuples) != s.relationships() {
		t.Fatalf("%d tuples, relationships() says %d", len(tuples), s.relationships())
	}
	// evaluate the model over the tuples: view = viewer + org->access,
	// access = member + manage, manage = admin + parent->manage
	has := map[tuple]bool{}
	parent := map[string]string{}
	for _, x := range tuples {
		has[x] = true
		if x.Relation == "parent" {
			parent[x.Object] = x.User
		}
	}
	manages := func(user, org string) bool {
		for ; org != ""; org = parent[org] {
			if has[tuple{user, "admin", org}] {
				return true
			}
		}
		return false
	}
	for u := range s.users {
		user := userRef(u)
		for d := range s.docs {
			doc := docRef(d)
			want := has[tuple{user, "viewer", doc}]
			for _, x := range tuples {
				if x.Object == doc && x.Relation == "org" && (has[tuple{user, "member", x.User}] || manages(user, x.User)) {
					want = true
				}
			}
			if got := s.allowed(u, d); got != want {
				t.Fatalf("allowed(u%d, d%d) = %v; the tuples say %v", u, d, got, want)
			}
		}
	}
}

func TestPairs(t *testing.T) {
	s := dataset{tenants: 5, users: 200, docs: 120}
	p := s.pairs(1000, 7)
	if !slices.Equal(p, s.pairs(1000, 7)) {
		t.Fatal("pairs differ for the same seed")
	}
	if slices.Equal(p, s.pairs(1000, 8)) {
		t.Fatal("pairs are the same for another seed")
	}
	sameTenantDenials := 0
	for i, x := range p {
		if got := s.allowed(int(x.user), int(x.doc)); got != (i%2 == 0) {
			t.Fatalf("pair %d (u%d, d%d): allowed %v, want even pairs allowed and odd denied", i, x.user, x.doc, got)
		}
		if i%2 == 1 && s.userLeaf(int(x.user))/leavesPerTenant == s.docLeaf(int(x.doc))/leavesPerTenant {
			sameTenantDenials++
		}
	}
	if sameTenantDenials == 0 {
		t.Error("no denial within the document's tenant: the sibling-leaf denials are missing")
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []dataset{{0, 10, 10}, {2, 11, 10}, {2, 12, 0}} {
		if s.validate() == nil {
			t.Errorf("%+v: valid, want an error", s)
		}
	}
	if err := (dataset{2, 12, 1}).validate(); err != nil {
		t.Errorf("smallest dataset: %v", err)
	}
}

func userRef(u int) string { return "user:u" + strconv.Itoa(u) }
func docRef(d int) string  { return "document:d" + strconv.Itoa(d) }

// The spicedb-postgres arm's schema and relationships (the openfga arm's
// tuples, turned around) must answer as the truth: every (user, document) of
// a small dataset is checked on an in-process SpiceDB.
func TestSpiceDBSchemaMatchesTruth(t *testing.T) {
	s := dataset{tenants: 3, users: 40, docs: 50}
	var rels []engine.Relationship
	for _, x := range openfgaTuples(s) {
		r := x.asSpiceDB()
		rels = append(rels, engine.Relationship{
			Resource: engine.ObjectRef{Type: r.Resource.ObjectType, ID: r.Resource.ObjectID},
			Relation: r.Relation,
			Subject:  engine.SubjectRef{Object: engine.ObjectRef{Type: r.Subject.Object.ObjectType, ID: r.Subject.Object.ObjectID}},
		})
	}
	if got, want := rels[0].String(), "organization:t0-c0#parent@organization:t0"; got != want {
		t.Fatalf("first relationship %s, want %s (the child's parent is the root)", got, want)
	}
	ctx := context.Background()
	spicedb, stop, err := engine.NewScratch(ctx, spicedbSchema, rels)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for u := range s.users {
		for d := range s.docs {
			res, err := spicedb.Check(ctx, engine.CheckRequest{
				Resource: engine.ObjectRef{Type: "document", ID: "d" + strconv.Itoa(d)}, Permission: "view",
				Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: "u" + strconv.Itoa(u)}}, Consistency: engine.Consistency{Mode: engine.FullyConsistent},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Allowed(), s.allowed(u, d); got != want {
				t.Fatalf("SpiceDB: u%d may view d%d: %v; the truth says %v", u, d, got, want)
			}
		}
	}
}

func TestIsAllowed(t *testing.T) {
	for body, want := range map[string]bool{
		`{"allowed":true,"checkedAt":"GgYKBENJQ0k="}`:  true, // Trellis
		`{"allowed":false,"checkedAt":"GgYKBENJQ0k="}`: false,
		`{"allowed":true,"resolution":""}`:             true, // OpenFGA
		`{"allowed":false,"resolution":""}`:            false,
		// SpiceDB's gateway (protojson: with or without a space after the colon)
		`{"checkedAt":{"token":"GhUKEzE3"},"permissionship":"PERMISSIONSHIP_HAS_PERMISSION","partialCaveatInfo":null}`: true,
		`{"checkedAt":{"token":"GhUKEzE3"}, "permissionship": "PERMISSIONSHIP_HAS_PERMISSION"}`:                        true,
		`{"checkedAt":{"token":"GhUKEzE3"},"permissionship":"PERMISSIONSHIP_NO_PERMISSION"}`:                           false,
		`{"checkedAt":{"token":"GhUKEzE3"},"permissionship":"PERMISSIONSHIP_CONDITIONAL_PERMISSION"}`:                  false,
		`{"code":16,"message":"invalid preshared key"}`:                                                                false,
	} {
		if got := isAllowed([]byte(body)); got != want {
			t.Errorf("isAllowed(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestWrittenAt(t *testing.T) {
	for body, want := range map[string]string{
		`{"writtenAt":"GgYKBENJQ0k="}`:                      "GgYKBENJQ0k=",         // Trellis
		`{"writtenAt":{"token":"GhUKEzE3NjQ2ODk2NTE="}}`:    "GhUKEzE3NjQ2ODk2NTE=", // SpiceDB
		`{"writtenAt": {"token": "GhUKEzE3NjQ2ODk2NTE="}} `: "GhUKEzE3NjQ2ODk2NTE=",
		`{}`:       "", // OpenFGA
		`not json`: "",
	} {
		if got := writtenAt([]byte(body)); got != want {
			t.Errorf("writtenAt(%s) = %q, want %q", body, got, want)
		}
	}
}

// The SpiceDB requests the workers send have the REST API's field names: the
// gateway ignores unknown fields (protojson's DiscardUnknown), so a misspelt
// consistency would silently fall back to the default.
func TestSpiceDBRequests(t *testing.T) {
	tg := &target{kind: "spicedb"}
	path, body := tg.check(3, 7, "", false)
	if path != "/v1/permissions/check" || string(body) != `{"consistency":{"minimizeLatency":true},"resource":{"objectType":"document","objectId":"d7"},"permission":"view","subject":{"object":{"objectType":"user","objectId":"u3"}}}` {
		t.Errorf("check: %s %s", path, body)
	}
	_, body = tg.checkSubject("user:w1_2", 7, "tok")
	if string(body) != `{"consistency":{"atLeastAsFresh":{"token":"tok"}},"resource":{"objectType":"document","objectId":"d7"},"permission":"view","subject":{"object":{"objectType":"user","objectId":"w1_2"}}}` {
		t.Errorf("fresh check: %s", body)
	}
	path, body = tg.write(false, 7, "user:w1_2")
	if path != "/v1/relationships/write" || string(body) != `{"updates":[{"operation":"OPERATION_DELETE","relationship":{"resource":{"objectType":"document","objectId":"d7"},"relation":"viewer","subject":{"object":{"objectType":"user","objectId":"w1_2"}}}}]}` {
		t.Errorf("write: %s %s", path, body)
	}
}
