package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// leavesPerTenant: each tenant is a root organization with 3 children, each
// with 2 leaves.
const leavesPerTenant = 6

// dataset is the generated data, described by its sizes alone: who belongs
// where is arithmetic on the indexes, so the expected answer of any check is
// computed, never stored.
//
//   - Leaf l (0 ≤ l < 6·tenants) belongs to tenant l/6, under child (l%6)/2.
//   - User u is a member (role member) of leaf u % leaves.
//   - The first user of each tenant's first leaf, user 6·t, is also an admin
//     of the tenant's root: manage flows down the parent chain, so it may view
//     every document of its tenant.
//   - Document d is in leaf d % leaves; every 10th document also has a direct
//     viewer, user (31·d + 7) % users, usually of another tenant.
type dataset struct {
	tenants, users, docs int
}

func (s dataset) validate() error {
	switch {
	case s.tenants < 1:
		return errors.New("-tenants must be at least 1")
	case s.users < s.leaves():
		return fmt.Errorf("-users must be at least 6 per tenant (%d), so that every leaf has a member", s.leaves())
	case s.docs < 1:
		return errors.New("-docs must be at least 1")
	}
	return nil
}

func (s dataset) leaves() int { return s.tenants * leavesPerTenant }

func (s dataset) userLeaf(u int) int { return u % s.leaves() }
func (s dataset) docLeaf(d int) int  { return d % s.leaves() }

// adminOf is the tenant whose root user u administers, or -1.
func (s dataset) adminOf(u int) int {
	if u < s.leaves() && u%leavesPerTenant == 0 {
		return u / leavesPerTenant
	}
	return -1
}

// viewer is document d's direct viewer, or -1.
func (s dataset) viewer(d int) int {
	if d%10 != 0 {
		return -1
	}
	return (31*d + 7) % s.users
}

// allowed is the truth: may user u view document d?
func (s dataset) allowed(u, d int) bool {
	l := s.docLeaf(d)
	return s.userLeaf(u) == l || s.adminOf(u) == l/leavesPerTenant || s.viewer(d) == u
}

// relationships is how many relationships the graph holds: parents, members,
// admins, documents' organizations and viewers.
func (s dataset) relationships() int {
	return s.tenants*(3+leavesPerTenant) + s.users + s.tenants + s.docs + (s.docs+9)/10
}

// pair is one (user, document) check.
type pair struct{ user, doc int32 }

// pairs draws n checks from seed: even ones allowed (a member of the
// document's leaf, its tenant's admin or its direct viewer), odd ones denied
// (half a user of a sibling leaf of the same tenant, half anyone else).
func (s dataset) pairs(n int, seed uint64) []pair {
	r := rand.New(rand.NewPCG(seed, 0x7e11))
	out := make([]pair, n)
	L := s.leaves()
	member := func(l int) int { // a random member of leaf l
		count := (s.users - l + L - 1) / L
		return l + r.IntN(count)*L
	}
	for i := range out {
		d := r.IntN(s.docs)
		l := s.docLeaf(d)
		var u int
		if i%2 == 0 {
			switch x := r.IntN(20); {
			case x == 0:
				u = l / leavesPerTenant * leavesPerTenant // the tenant's admin
			case x == 1 && s.viewer(d) >= 0:
				u = s.viewer(d)
			default:
				u = member(l)
			}
		} else {
			for {
				if r.IntN(2) == 0 {
					sibling := l/leavesPerTenant*leavesPerTenant + (l%leavesPerTenant+1+r.IntN(leavesPerTenant-1))%leavesPerTenant
					u = member(sibling)
				} else {
					u = r.IntN(s.users)
				}
				if !s.allowed(u, d) {
					break
				}
			}
		}
		out[i] = pair{int32(u), int32(d)}
	}
	return out
}

// zipfSequence is the order the workers take pairs in: seqLen draws of a Zipf
// distribution with exponent zipfS over the pair indexes (pair 0 the hottest).
func zipfSequence(pairs int, zipfS float64, seed uint64, seqLen int) ([]int32, error) {
	if zipfS <= 1 {
		return nil, errors.New("-zipf must be above 1")
	}
	r := rand.New(rand.NewPCG(seed, 0x21bf))
	z := rand.NewZipf(r, zipfS, 1, uint64(pairs-1))
	out := make([]int32, seqLen)
	for i := range out {
		out[i] = int32(z.Uint64())
	}
	return out, nil
}
