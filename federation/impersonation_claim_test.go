package federation

import (
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	trellis "github.com/trellis-iam/trellis"
)

// An impersonation token names the impersonation it was minted for ("imp"),
// next to "act", so whoever accepts it can resolve that impersonation and no
// other (issue 13, finding 10).
func TestImpersonationClaim(t *testing.T) {
	c := newClock()
	s := newTestSigner(t, c)

	tok := issue(t, s, AccessClaims{Subject: "user:ivan", Organization: "globex", Actor: "user:gary", Impersonation: "imp_a"})
	_, payload := segments(t, tok)
	if payload["imp"] != "imp_a" {
		t.Fatalf("imp = %v, want imp_a: %v", payload["imp"], payload)
	}
	if act, _ := payload["act"].(map[string]any); act["sub"] != "user:gary" {
		t.Fatalf("act = %v, want sub user:gary", payload["act"])
	}
	if v := mustVerify(t, s, tok); v.Impersonation != "imp_a" || v.Actor != "user:gary" || v.Subject != "user:ivan" {
		t.Fatalf("Verified = %+v, want impersonation imp_a by user:gary of user:ivan", v)
	}

	// act without imp still verifies (whoever accepts it decides); imp never
	// appears without act
	if v := mustVerify(t, s, issue(t, s, AccessClaims{Subject: "user:ivan", Actor: "user:gary"})); v.Impersonation != "" {
		t.Fatalf("Verified = %+v, want no impersonation", v)
	}
	if _, payload := segments(t, issue(t, s, AccessClaims{Subject: "user:ivan"})); payload["imp"] != nil {
		t.Fatalf("imp present on a plain token: %v", payload)
	}
	_, _, err := s.Issue(AccessClaims{Subject: "user:ivan", Impersonation: "imp_a"})
	var ve *trellis.ValidationError
	if !errors.As(err, &ve) || ve.Field != "impersonation" {
		t.Fatalf("Issue(imp without act) = %v, want a ValidationError on impersonation", err)
	}
	k := currentKey(s)
	orphan := validClaims(c)
	orphan.Imp = "imp_a"
	refused(t, s, forge(t, jose.ES256, k.private, k.kid, AccessTokenType, orphan), "imp claim without act")
}
