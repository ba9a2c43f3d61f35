package api_test

import (
	"strings"
	"testing"
	"time"
)

func TestServiceAccountKeys(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	start := h.clock.Now()
	base := "/v1/organizations/customer/service-accounts"
	customer := "organization:" + tr.customer

	sa := p.do(201, "POST", base, map[string]any{"name": "ci-bot", "roles": []string{"member"}})
	saID := str(sa, "id")
	wantEqual(t, "service account", []any{sa["organization"], sa["name"], strs(sa["roles"]), sa["subject"]},
		[]any{tr.customer, "ci-bot", []string{"member"}, "service_account:" + saID})
	h.expect(true, customer, "access", "service_account:"+saID)
	h.expect(false, customer, "manage_members", "service_account:"+saID)

	keys := base + "/" + saID + "/keys"
	created := p.do(201, "POST", keys, map[string]any{"permissions": []string{"manage_members"}})
	keyID, secret := str(created, "id"), str(created, "key")
	if !strings.HasPrefix(secret, "trk."+keyID+".") || len(secret) < len("trk."+keyID+".")+40 {
		t.Fatalf("key %q (id %q)", secret, keyID)
	}
	wantEqual(t, "key", []any{created["serviceAccount"], created["organization"], strs(created["permissions"]), created["status"]},
		[]any{saID, tr.customer, []string{"manage_members"}, "active"})
	listed := items(t, p.do(200, "GET", keys, nil), "keys")
	wantEqual(t, "listed keys", pluck(listed, "id"), []string{keyID})
	for _, field := range []string{"key", "lastUsedAt"} {
		if _, ok := listed[0][field]; ok {
			t.Errorf("a fresh listed key shows %s: %v", field, listed[0])
		}
	}

	// a key narrows its account's permissions; it grants nothing the account lacks
	bot := h.as(secret)
	x := createUser(h, "xena@customer.example")
	bot.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "members-admin", "permissions": []string{"manage_members"}})
	wantEqual(t, "roles", strs(p.do(200, "PATCH", base+"/"+saID, map[string]any{"roles": []string{"member", "members-admin"}})["roles"]), []string{"member", "members-admin"})
	m := bot.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	wantEqual(t, "membership by the key", []any{m["user"], m["organization"]}, []any{x, tr.customer})
	h.canAccess(true, tr.customer, x)
	bot.do(200, "GET", "/v1/organizations/customer/members", nil)
	bot.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"admin"}})
	bot.fails(403, "forbidden", "", "GET", "/v1/organizations/customer/audit", nil)
	bot.fails(403, "forbidden", "", "POST", base, map[string]any{"name": "another"})
	bot.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": "user:" + x})
	bot.fails(403, "forbidden", "", "POST", "/v1/check", map[string]any{"resource": customer, "permission": "access", "subject": "user:" + x})
	// its organization only
	for _, ref := range []string{"reseller", "sibling"} {
		bot.fails(404, "not_found", "", "GET", "/v1/organizations/"+ref, nil)
		bot.fails(404, "not_found", "", "PUT", "/v1/organizations/"+ref+"/members/"+x, map[string]any{"roles": []string{"member"}})
	}
	wantEqual(t, "organizations the key sees", orgIDs(h, bot, "/v1/organizations"), []string{tr.customer})

	// an admin account whose key may only read the audit log
	admin := str(p.do(201, "POST", base, map[string]any{"name": "auditor-bot", "roles": []string{"admin"}}), "id")
	reader := h.as(str(p.do(201, "POST", base+"/"+admin+"/keys", map[string]any{"permissions": []string{"view_audit"}}), "key"))
	reader.do(200, "GET", "/v1/organizations/customer/audit", nil)
	reader.do(200, "GET", "/v1/organizations/region/audit", nil)
	reader.fails(403, "forbidden", "", "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	reader.fails(403, "forbidden", "", "PATCH", "/v1/organizations/customer", map[string]any{"name": "Renamed"})

	// key input
	p.fails(400, "invalid_argument", "permissions[0]", "POST", keys, map[string]any{"permissions": []string{"fly"}})
	p.fails(400, "invalid_argument", "permissions", "POST", keys, map[string]any{"permissions": []string{}})
	p.fails(400, "invalid_argument", "expiresAt", "POST", keys, map[string]any{"permissions": []string{"access"}, "expiresAt": start.Add(-time.Hour).Format(time.RFC3339)})
	p.fails(400, "invalid_argument", "overlapSeconds", "POST", keys+"/"+keyID+"/rotate", map[string]any{"overlapSeconds": -1})
	p.fails(404, "not_found", "", "POST", keys+"/key_nosuchkey/rotate", map[string]any{"overlapSeconds": 60})
	// a customer admin manages its own accounts only, and cannot mint keys above its power
	ca := h.as(tr.customerToken)
	ca.do(200, "GET", keys, nil)
	ca.fails(404, "not_found", "", "GET", "/v1/organizations/reseller/service-accounts", nil)
	mm := createUser(h, "mo@customer.example")
	putMember(h, testKey, tr.customer, mm, "members-admin")
	h.as(h.token(mm, tr.customer)).fails(403, "forbidden", "", "POST", keys, map[string]any{"permissions": []string{"manage_members"}})

	// rotation with overlap: both keys work, then only the new one
	rotated := p.do(201, "POST", keys+"/"+keyID+"/rotate", map[string]any{"overlapSeconds": 60})
	newID, newSecret := str(rotated, "id"), str(rotated, "key")
	if newID == keyID || !strings.HasPrefix(newSecret, "trk."+newID+".") {
		t.Fatalf("rotated key %v", rotated)
	}
	wantEqual(t, "rotated permissions", strs(rotated["permissions"]), []string{"manage_members"})
	successor := h.as(newSecret)
	bot.do(200, "GET", "/v1/organizations/customer/members", nil)
	successor.do(200, "GET", "/v1/organizations/customer/members", nil)
	byID := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, k := range items(t, p.do(200, "GET", keys, nil), "keys") {
			if _, ok := k["key"]; ok {
				t.Errorf("a listed key shows its secret: %v", k)
			}
			out[str(k, "id")] = k
		}
		return out
	}
	wantTime(t, "old key's expiresAt", byID()[keyID]["expiresAt"], start.Add(60*time.Second))
	h.clock.Advance(61 * time.Second)
	bot.fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer/members", nil)
	successor.do(200, "PUT", "/v1/organizations/customer/members/"+mm, map[string]any{"roles": []string{"member"}})
	all := byID()
	wantEqual(t, "statuses after the overlap", []any{all[keyID]["status"], all[newID]["status"]}, []any{"expired", "active"})
	// lastUsedAt: the old key was last used before the overlap ended, the new one just now
	wantTime(t, "old key lastUsedAt", all[keyID]["lastUsedAt"], start)
	wantTime(t, "new key lastUsedAt", all[newID]["lastUsedAt"], start.Add(61*time.Second))
	p.fails(409, "key_expired", "", "POST", keys+"/"+keyID+"/rotate", nil)

	// revocation is immediate
	p.do(204, "DELETE", keys+"/"+newID, nil)
	successor.fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer/members", nil)
	wantEqual(t, "revoked status", byID()[newID]["status"], "revoked")
	p.fails(409, "key_revoked", "", "POST", keys+"/"+newID+"/rotate", nil)
	for _, bad := range []string{"trk.nope.nope", "trk." + newID + ".wrong-secret", "trk." + keyID, "trk."} {
		h.as(bad).fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer", nil)
	}

	// the key's writes are audited as the service account, naming the key
	events := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?actor=service_account:"+saID, nil), "events")
	// (the refused PUT above is audited too, as a denied escalation)
	wantEqual(t, "service account's actions", pluck(events, "action"), []string{"member.add", "member.put.denied", "member.update"})
	for _, ev := range events {
		details, _ := ev["details"].(map[string]any)
		if details["apiKey"] == nil {
			t.Errorf("event %v does not name its API key", ev)
		}
	}
	wantEqual(t, "keys named", []any{events[0]["details"].(map[string]any)["apiKey"], events[2]["details"].(map[string]any)["apiKey"]}, []any{keyID, newID})

	// deleting the account stops its remaining keys and its graph access
	third := h.as(str(p.do(201, "POST", keys, map[string]any{"permissions": []string{"access"}}), "key"))
	third.do(200, "GET", "/v1/organizations/customer", nil)
	p.do(204, "DELETE", base+"/"+saID, nil)
	third.fails(401, "unauthenticated", "", "GET", "/v1/organizations/customer", nil)
	h.expect(false, customer, "access", "service_account:"+saID)
	p.fails(404, "not_found", "", "GET", base+"/"+saID, nil)
}
