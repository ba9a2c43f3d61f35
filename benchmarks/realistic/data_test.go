package main

import (
	"slices"
	"strconv"
	"testing"
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
