package api_test

import (
	"testing"
	"time"
)

// supportUser creates a provider support engineer (platform support relation)
// and returns its id and an unscoped access token.
func supportUser(h *harness, email string) (string, string) {
	h.t.Helper()
	id := createUser(h, email)
	h.write(rel("platform:trellis", "support", "user:"+id))
	return id, h.token(id, "")
}

// checkAs is POST /v1/check with an impersonation actor (provider key).
func (h *harness) checkAs(resource, permission, subject, actor string) bool {
	h.t.Helper()
	out := h.provider().do(200, "POST", "/v1/check", map[string]any{
		"resource": resource, "permission": permission, "subject": subject, "actor": actor,
		"consistency": map[string]any{"fullyConsistent": true},
	})
	return out["allowed"] == true
}

func TestImpersonationReadOnlyWithApproval(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	sue, sueToken := supportUser(h, "sue@provider.example")
	sa := h.as(sueToken)
	x := createUser(h, "xia@customer.example")
	member := map[string]any{"roles": []string{"member"}}
	ca.do(200, "PATCH", "/v1/organizations/customer", map[string]any{"policy": map[string]any{"requireImpersonationApproval": true}})

	body := map[string]any{"actor": "user:" + sue, "target": "user:" + tr.customerAdmin, "organization": "customer",
		"reason": "ticket 4711: cannot see invoices", "scopes": []string{"read-only"}, "duration": "PT10M"}
	// a reason is mandatory; the target must be a member; nobody impersonates for someone else
	noReason := map[string]any{"actor": body["actor"], "target": body["target"], "organization": "customer"}
	sa.fails(400, "", "reason", "POST", "/v1/impersonations", noReason)
	outsider := map[string]any{"actor": body["actor"], "target": "user:" + tr.siblingMember, "organization": "customer", "reason": "x"}
	sa.fails(400, "", "target", "POST", "/v1/impersonations", outsider)
	forever := map[string]any{"actor": body["actor"], "target": body["target"], "organization": "customer", "reason": "x", "duration": "forever"}
	sa.fails(400, "", "duration", "POST", "/v1/impersonations", forever)
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "", "", "POST", "/v1/impersonations", body)
	// a plain member may not impersonate at all
	asMember := map[string]any{"target": "user:" + tr.customerAdmin, "organization": "customer", "reason": "curious"}
	h.as(h.token(tr.customerMember, tr.customer)).fails(403, "", "", "POST", "/v1/impersonations", asMember)

	im := sa.do(201, "POST", "/v1/impersonations", body)
	id := str(im, "id")
	wantEqual(t, "status", im["status"], "pending")
	wantEqual(t, "scopes", strs(im["scopes"]), []string{"read-only"})
	wantEqual(t, "durationSeconds", im["durationSeconds"], float64(600))
	// not live yet: no token, checks with actor deny
	sa.fails(409, "impersonation_pending", "", "POST", "/v1/impersonations/"+id+"/token", nil)
	if h.checkAs("organization:"+tr.customer, "access", "user:"+tr.customerAdmin, "user:"+sue) {
		t.Fatal("check with actor allowed before approval")
	}
	// the actor cannot approve itself; the customer sees the request and approves
	sa.fails(403, "", "", "POST", "/v1/impersonations/"+id+"/approve", nil)
	listed := items(t, ca.do(200, "GET", "/v1/organizations/customer/impersonations", nil), "impersonations")
	wantEqual(t, "listed", pluck(listed, "id"), []string{id})
	wantEqual(t, "listed reason", listed[0]["reason"], "ticket 4711: cannot see invoices")
	im = ca.do(200, "POST", "/v1/impersonations/"+id+"/approve", nil)
	wantEqual(t, "status", im["status"], "active")
	wantTime(t, "expiresAt", im["expiresAt"], h.clock.Now().Add(10*time.Minute))

	// the token: sub is the target, act names the actor
	tok := sa.do(201, "POST", "/v1/impersonations/"+id+"/token", nil)
	claims := jwtPart(t, str(tok, "accessToken"), 1)
	wantEqual(t, "sub", claims["sub"], tr.customerAdmin)
	wantEqual(t, "org", claims["org"], tr.customer)
	if act, _ := claims["act"].(map[string]any); act["sub"] != sue {
		t.Fatalf("act = %v, want sub %s", claims["act"], sue)
	}
	imp := h.as(str(tok, "accessToken"))
	// read-only: reads pass, writes are refused although the target may write
	imp.do(200, "GET", "/v1/organizations/customer", nil)
	imp.do(200, "GET", "/v1/organizations/customer/members", nil)
	imp.fails(403, "", "", "PUT", "/v1/organizations/customer/members/"+x, member)
	imp.fails(403, "", "", "PATCH", "/v1/organizations/customer", map[string]any{"name": "Hijacked"})
	ca.do(201, "PUT", "/v1/organizations/customer/members/"+x, member) // the target itself still can
	// checks with actor: target holds it AND live AND within scope
	if !h.checkAs("organization:"+tr.customer, "access", "user:"+tr.customerAdmin, "user:"+sue) {
		t.Error("check access with actor denied during a live read-only impersonation")
	}
	if h.checkAs("organization:"+tr.customer, "manage_members", "user:"+tr.customerAdmin, "user:"+sue) {
		t.Error("check manage_members with actor allowed outside a read-only scope")
	}
	if h.checkAs("organization:"+tr.sibling, "access", "user:"+tr.customerAdmin, "user:"+sue) {
		t.Error("check with actor allowed where the target holds nothing")
	}

	// ending it stops the token and the checks at once
	ended := sa.do(200, "POST", "/v1/impersonations/"+id+"/end", nil)
	wantEqual(t, "status", ended["status"], "ended")
	imp.fails(401, "", "", "GET", "/v1/organizations/customer", nil)
	if h.checkAs("organization:"+tr.customer, "access", "user:"+tr.customerAdmin, "user:"+sue) {
		t.Error("check with actor allowed after the impersonation ended")
	}

	// the customer sees who, when, why, and what was done
	got := ca.do(200, "GET", "/v1/impersonations/"+id, nil)
	wantEqual(t, "actor", got["actor"], "user:"+sue)
	wantEqual(t, "approvedBy", got["approvedBy"], "user:"+tr.customerAdmin)
	events := auditEvents(h, p, "/v1/organizations/customer/audit")
	for _, action := range []string{"impersonation.request", "impersonation.approve", "impersonation.start", "impersonation.token", "impersonation.end"} {
		ev := find(t, events, action, "user:"+tr.customerAdmin)
		if det, _ := ev["details"].(map[string]any); det != nil && action != "impersonation.token" && det["reason"] != "ticket 4711: cannot see invoices" {
			t.Errorf("%s details = %v, want the reason", action, det)
		}
	}
}

func TestImpersonationActionsAuditedAndExpiry(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	ra := h.as(tr.resellerToken)
	x := createUser(h, "xia@customer.example")

	// the reseller's admin (it governs the customer) acts as the customer's
	// admin with the members scope, for 6 seconds; no approval required. The
	// graph's expiry runs on real time: bring the directory's clock, which
	// computes expiresAt, up to it first.
	h.clock.Advance(time.Since(h.clock.Now()))
	body := map[string]any{"actor": "user:" + tr.resellerAdmin, "target": "user:" + tr.customerAdmin, "organization": tr.customer,
		"reason": "onboarding help", "scopes": []string{"manage_members", "access"}, "duration": 6}
	im := ra.do(201, "POST", "/v1/impersonations", body)
	id := str(im, "id")
	wantEqual(t, "status", im["status"], "active")
	ra.fails(409, "impersonation_live", "", "POST", "/v1/impersonations", body) // one live session per actor and target
	imp := h.as(str(ra.do(201, "POST", "/v1/impersonations/"+id+"/token", nil), "accessToken"))
	imp.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	imp.fails(403, "", "", "PATCH", "/v1/organizations/customer", map[string]any{"name": "Renamed"})
	// an impersonated session cannot start another one
	imp.fails(403, "", "", "POST", "/v1/impersonations", body)

	// the action carries both identities
	events := auditEvents(h, p, "/v1/organizations/customer/audit")
	ev := find(t, events, "member.add", "user:"+x)
	wantEqual(t, "actor", ev["actor"], "user:"+tr.customerAdmin)
	wantEqual(t, "impersonator", ev["impersonator"], "user:"+tr.resellerAdmin)
	got := ca.do(200, "GET", "/v1/impersonations/"+id, nil)
	acts := items(t, got, "actions")
	if len(acts) != 1 || acts[0]["action"] != "member.add" || acts[0]["target"] != "user:"+x {
		t.Fatalf("actions = %v, want the one member.add", got["actions"])
	}

	// it ends on expiry without any further action: the graph denies first
	if !h.checkAs("organization:"+tr.customer, "manage_members", "user:"+tr.customerAdmin, "user:"+tr.resellerAdmin) {
		t.Fatal("check with actor denied during the impersonation")
	}
	expiresAt, err := time.Parse(time.RFC3339Nano, str(im, "expiresAt"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(expiresAt)) // no write in between: the expiry alone ends it
	for deadline := time.Now().Add(5 * time.Second); h.checkAs("organization:"+tr.customer, "manage_members", "user:"+tr.customerAdmin, "user:"+tr.resellerAdmin); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("check with actor still allowed 5 s after expiry")
		}
	}
	h.clock.Advance(expiresAt.Sub(h.clock.Now()) + time.Second)
	imp.fails(401, "", "", "GET", "/v1/organizations/customer", nil)
	wantEqual(t, "status", ca.do(200, "GET", "/v1/impersonations/"+id, nil)["status"], "expired")
	ra.fails(409, "impersonation_expired", "", "POST", "/v1/impersonations/"+id+"/token", nil)

	// only platform admins may act as a platform admin
	ops := createUser(h, "ops@provider.example")
	h.write(rel("platform:trellis", "admin", "user:"+ops))
	putMember(h, testKey, tr.customer, ops, "member")
	ca.fails(403, "", "", "POST", "/v1/impersonations", map[string]any{"target": "user:" + ops, "organization": "customer", "reason": "x"})
	events = auditEvents(h, p, "/v1/organizations/customer/audit")
	find(t, events, "impersonation.request.denied", "organization:"+tr.customer)
	// the refused request left nothing behind
	listed := items(t, ca.do(200, "GET", "/v1/organizations/customer/impersonations", nil), "impersonations")
	wantEqual(t, "impersonations", pluck(listed, "id"), []string{id})
}
