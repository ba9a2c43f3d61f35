package api_test

import (
	"testing"

	"github.com/trellis-iam/trellis/directory"
)

// Finding 10: an impersonation token carries its impersonation's id and dies
// with it; a later impersonation of the same target by the same actor in the
// same organization does not revive it.
func TestFinding10ImpersonationTokenDiesWithItsImpersonation(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	ga := h.as(w.garyToken)
	putMember(h, testKey, w.globex, w.ivan, "member")

	first := impersonate(ga, "", w.ivan, "globex", "read-only")
	tokA := impersonationToken(ga, first)
	if claims := jwtPart(t, tokA, 1); claims["imp"] != first {
		t.Fatalf("token claims %v, want imp %s", claims, first)
	}
	a := h.as(tokA)
	a.do(200, "GET", "/v1/organizations/globex", nil)
	ga.do(200, "POST", "/v1/impersonations/"+first+"/end", nil)
	a.fails(401, "", "", "GET", "/v1/organizations/globex", nil)

	second := impersonate(ga, "", w.ivan, "globex", "read-only")
	b := h.as(impersonationToken(ga, second))
	b.do(200, "GET", "/v1/organizations/globex", nil)
	a.fails(401, "", "", "GET", "/v1/organizations/globex", nil) // not revived by the second
	a.fails(401, "", "", "GET", "/v1/organizations/globex/members", nil)

	// the claims must name that very impersonation: its actor, target and organization
	ctx := t.Context()
	live := directory.AccessClaims{User: w.ivan, Org: w.globex, Actor: w.gary, Impersonation: second}
	if p, err := h.dir.UserPrincipal(ctx, live); err != nil || p.Impersonation != second || p.Org != w.globex {
		t.Fatalf("UserPrincipal(%+v) = %+v, %v; want impersonation %s in %s", live, p, err, second, w.globex)
	}
	for _, bad := range []directory.AccessClaims{
		{User: w.ivan, Org: w.globex, Actor: w.gary},                               // no impersonation named
		{User: w.ivan, Org: w.globex, Actor: w.gary, Impersonation: first},         // ended
		{User: w.ivan, Org: w.globex, Actor: w.rita, Impersonation: second},        // another actor
		{User: w.rita, Org: w.globex, Actor: w.gary, Impersonation: second},        // another target
		{User: w.ivan, Org: w.initech, Actor: w.gary, Impersonation: second},       // another organization
		{User: w.ivan, Org: w.globex, Actor: w.gary, Impersonation: "imp_unknown"}, // unknown
	} {
		if p, err := h.dir.UserPrincipal(ctx, bad); err == nil {
			t.Errorf("UserPrincipal(%+v) = %+v, want 401", bad, p)
		}
	}

	ga.do(200, "POST", "/v1/impersonations/"+second+"/end", nil)
	b.fails(401, "", "", "GET", "/v1/organizations/globex", nil)
}
