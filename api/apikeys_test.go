package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// An app deployed for one customer holds a check key bound to that customer:
// it answers the customer's checks and lookups, and 403 for everything else.
func TestProviderKeyBoundToOrganization(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	p := h.provider()
	h.write(rel("document:loose-note", "owner", "user:"+w.ivan))

	k := p.do(201, "POST", "/v1/api-keys", map[string]any{"name": "globex app", "scopes": []string{"check"}, "organization": "globex"})
	id, secret := str(k, "id"), str(k, "secret")
	if !strings.HasPrefix(secret, "trp."+id+".") || len(secret) < len("trp."+id+".")+40 {
		t.Fatalf("key %q (id %q)", secret, id)
	}
	wantEqual(t, "key", []any{k["name"], strs(k["scopes"]), k["organization"], k["status"]},
		[]any{"globex app", []string{"check"}, w.globex, "active"})
	app := h.as(secret)
	gary := "user:" + w.gary
	check := func(resource, subject string) map[string]any {
		return map[string]any{"resource": resource, "permission": "view", "subject": subject}
	}

	// inside globex's subtree: answered, and from the cache the second time
	for _, doc := range []string{"document:globex-plan", "document:globex-eu-plan"} {
		first := app.do(200, "POST", "/v1/check", check(doc, gary))
		again := app.do(200, "POST", "/v1/check", check(doc, gary))
		wantEqual(t, doc, []any{first["allowed"], again["allowed"], again["cached"]}, []any{true, true, true})
	}

	// another tenant's resource or subject, the parent, an unplaceable
	// object, an unknown one: 403 whatever the answer would be
	for _, c := range [][2]string{
		{"document:initech-plan", gary},                 // another tenant's document
		{"document:globex-plan", "user:" + w.ivan},      // another tenant's user
		{"organization:" + w.northwind, gary},           // the parent
		{"organization:" + w.initech, "user:" + w.ivan}, // a sibling
		{"document:loose-note", "user:" + w.ivan},       // hangs from no organization
		{"document:nosuch", gary},                       // unknown
		{"platform:trellis", gary},                      // the platform
	} {
		out := app.fails(403, "forbidden", "", "POST", "/v1/check", check(c[0], c[1]))
		if d, _ := out["detail"].(string); strings.Contains(d, "allowed") {
			t.Errorf("403 leaks an answer: %v", out)
		}
	}
	bulk := map[string]any{"items": []any{check("document:globex-plan", gary), check("document:initech-plan", gary)}}
	if d := str(app.fails(403, "forbidden", "", "POST", "/v1/check/bulk", bulk), "detail"); !strings.Contains(d, "items[1]") {
		t.Errorf("bulk 403 does not name the item: %q", d)
	}
	app.do(200, "POST", "/v1/check/bulk", map[string]any{"items": []any{check("document:globex-plan", gary), check("document:globex-eu-plan", gary)}})

	// lookups: only inside objects; explain: inside paths only
	rita := "user:" + w.rita // northwind's admin manages every document, but is not globex's user
	app.fails(403, "forbidden", "", "POST", "/v1/lookup/resources", map[string]any{"resourceType": "document", "permission": "view", "subject": rita})
	putMember(h, testKey, w.globexEU, w.rita, "member")
	found := pluck(items(t, app.do(200, "POST", "/v1/lookup/resources", map[string]any{"resourceType": "document", "permission": "view", "subject": rita}), "resources"), "id")
	wantEqual(t, "rita's documents through the globex key", slices.Compact(sortedStrings(found...)), []string{"globex-eu-plan", "globex-plan"})
	all := pluck(items(t, p.do(200, "POST", "/v1/lookup/resources", map[string]any{"resourceType": "document", "permission": "view", "subject": rita}), "resources"), "id")
	wantEqual(t, "rita's documents through the admin key", slices.Compact(sortedStrings(all...)), []string{"globex-eu-plan", "globex-plan", "initech-plan"})
	subs := pluck(items(t, app.do(200, "POST", "/v1/lookup/subjects", map[string]any{"resource": "document:globex-plan", "permission": "view", "subjectType": "user"}), "subjects"), "id")
	wantEqual(t, "subjects through the globex key", slices.Compact(sortedStrings(subs...)), sortedStrings(w.gary, w.rita))
	app.fails(403, "forbidden", "", "POST", "/v1/lookup/subjects", map[string]any{"resource": "document:initech-plan", "permission": "view", "subjectType": "user"})
	ex := app.do(200, "POST", "/v1/explain", check("document:globex-plan", gary))
	if ex["allowed"] != true || len(ex["paths"].([]any)) == 0 {
		t.Errorf("explain through the key: %v", ex)
	}
	app.fails(403, "forbidden", "", "POST", "/v1/explain", check("document:initech-plan", gary))

	// a check key reaches nothing else
	app.fails(403, "forbidden", "", "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": rel("document:x", "owner", gary)}}})
	app.fails(403, "forbidden", "", "GET", "/v1/schema", nil)
	app.fails(403, "forbidden", "", "GET", "/v1/organizations/globex", nil)
	app.fails(403, "forbidden", "", "GET", "/v1/audit", nil)
	app.fails(403, "forbidden", "", "GET", "/v1/api-keys", nil)
	app.fails(403, "forbidden", "", "POST", "/v1/tokens", map[string]any{"subject": gary})
}

func TestProviderKeyLifecycle(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()
	start := h.clock.Now()
	createOrg(h, testKey, "Acme", "acme", "")

	// input
	p.fails(400, "invalid_argument", "name", "POST", "/v1/api-keys", map[string]any{"scopes": []string{"check"}})
	p.fails(400, "invalid_argument", "scopes", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{}})
	p.fails(400, "invalid_argument", "scopes[1]", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check", "fly"}})
	p.fails(422, "scope_not_confinable", "scopes[1]", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check", "schema:write"}, "organization": "acme"})
	p.fails(400, "invalid_argument", "organization", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check"}, "organization": "nosuch"})
	p.fails(400, "invalid_argument", "expiresAt", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check"}, "expiresAt": start.Add(-time.Hour).Format(time.RFC3339)})
	p.fails(400, "invalid_argument", "expiresAt", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check"}, "expiresAt": "soon"})
	p.fails(400, "invalid_argument", "expiresAt", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check"}, "expiresAt": "soon", "z1": 1, "z2": 2, "z3": 3})
	p.fails(400, "invalid_argument", "rateLimit.burst", "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"check"}, "rateLimit": map[string]any{"perSecond": 5, "burst": 0}})

	// an unbound key with graph scopes
	ops := p.do(201, "POST", "/v1/api-keys", map[string]any{"name": "ops", "scopes": []string{"relationships:write", "schema:read", "directory:write", "directory:read", "access:read"},
		"expiresAt": start.Add(time.Hour).Format(time.RFC3339)})
	opsKey := h.as(str(ops, "secret"))
	opsKey.do(200, "POST", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": rel("document:d1", "owner", "user:ann")}}})
	opsKey.do(200, "GET", "/v1/schema", nil)
	opsKey.fails(403, "forbidden", "", "PUT", "/v1/schema", map[string]any{"text": docApp})
	// a trailing slash reaches the same route, and needs the same scope
	opsKey.do(200, "GET", "/v1/schema/", nil)
	opsKey.fails(403, "forbidden", "", "PUT", "/v1/schema/", map[string]any{"text": docApp})
	opsKey.fails(403, "forbidden", "", "POST", "/v1/check/", map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann"})
	opsKey.do(200, "GET", "/v1/organizations/acme/", nil)
	opsKey.fails(403, "forbidden", "", "POST", "/v1/check", map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann"})
	opsKey.fails(403, "forbidden", "", "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document"}})
	opsKey.do(200, "GET", "/v1/organizations/acme", nil)
	// no key mints keys, whatever its scopes: a key cannot widen itself
	opsKey.fails(403, "forbidden", "", "POST", "/v1/api-keys", map[string]any{"name": "wider", "scopes": []string{"schema:write"}})
	opsKey.fails(403, "forbidden", "", "POST", "/v1/api-keys/"+str(ops, "id")+"/rotate", nil)
	opsKey.fails(403, "forbidden", "", "POST", "/v1/impersonations", map[string]any{"target": "user:ann", "organization": "acme", "reason": "x", "scopes": []string{"*"}})

	// listed without secrets, with last use
	listed := items(t, p.do(200, "GET", "/v1/api-keys", nil), "keys")
	wantEqual(t, "listed", pluck(listed, "id"), []string{str(ops, "id")})
	if _, has := listed[0]["secret"]; has || listed[0]["lastUsedAt"] == nil {
		t.Errorf("listed key %v: want no secret and a lastUsedAt", listed[0])
	}

	// rotation: the successor works at once, the old key until the overlap ends
	succ := p.do(201, "POST", "/v1/api-keys/"+str(ops, "id")+"/rotate", map[string]any{"overlapSeconds": 60})
	wantEqual(t, "successor", []any{succ["name"], strs(succ["scopes"])}, []any{"ops", strs(ops["scopes"])})
	chk := h.as(str(succ, "secret"))
	chk.do(200, "GET", "/v1/schema", nil)
	opsKey.do(200, "GET", "/v1/schema", nil)
	h.clock.Advance(61 * time.Second)
	opsKey.fails(401, "", "", "GET", "/v1/schema", nil)
	chk.do(200, "GET", "/v1/schema", nil)
	// expiry is the successor's too (kept from the original)
	h.clock.Advance(time.Hour)
	chk.fails(401, "", "", "GET", "/v1/schema", nil)

	// revocation stops a key at once, and a tampered secret never works
	k := p.do(201, "POST", "/v1/api-keys", map[string]any{"name": "app", "scopes": []string{"check"}})
	app := h.as(str(k, "secret"))
	body := map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann"}
	app.do(200, "POST", "/v1/check", body)
	h.as(str(k, "secret")+"x").fails(401, "", "", "POST", "/v1/check", body)
	h.as("trp."+str(ops, "id")+"."+strings.Split(str(k, "secret"), ".")[2]).fails(401, "", "", "POST", "/v1/check", body)
	p.do(204, "DELETE", "/v1/api-keys/"+str(k, "id"), nil)
	app.fails(401, "", "", "POST", "/v1/check", body)
	p.fails(409, "", "", "POST", "/v1/api-keys/"+str(k, "id")+"/rotate", nil)
	p.fails(404, "not_found", "", "DELETE", "/v1/api-keys/pk_nosuch", nil)

	// customers' admins do not manage provider keys
	u := createUser(h, "ada@acme.example")
	putMember(h, testKey, "acme", u, "admin")
	h.as(h.token(u, "")).fails(403, "forbidden", "", "GET", "/v1/api-keys", nil)

	// every change is on the provider's (platform) chain, verifiable
	events := items(t, p.do(200, "GET", "/v1/audit?action=provider_key.create", nil), "events")
	if len(events) != 3 || events[0]["organization"] != "" && events[0]["organization"] != nil {
		t.Errorf("provider_key.create events: %v", events)
	}
	for _, a := range []string{"provider_key.rotate", "provider_key.revoke"} {
		if n := len(items(t, p.do(200, "GET", "/v1/audit?action="+a, nil), "events")); n != 1 {
			t.Errorf("%s events: %d, want 1", a, n)
		}
	}
	if v := p.do(200, "GET", "/v1/audit/verify", nil); v["valid"] != true {
		t.Errorf("platform chain: %v", v)
	}
}

// Attacks on provider keys from a customer admin, a service account's key,
// an impersonator and the key holder itself.
func TestProviderKeyAttacks(t *testing.T) {
	h := newHarness(t, docApp)
	w := newDemoWorld(h)
	p := h.provider()
	k := p.do(201, "POST", "/v1/api-keys", map[string]any{"name": "globex app", "scopes": []string{"check"}, "organization": "globex"})
	id, secret := str(k, "id"), str(k, "secret")
	app := h.as(secret)
	mint := map[string]any{"name": "mine", "scopes": []string{"schema:write"}}

	// a customer admin, its service account's key and an impersonation manage no provider key
	ga := h.as(w.garyToken)
	sa := str(ga.do(201, "POST", "/v1/organizations/globex/service-accounts", map[string]any{"name": "bot", "roles": []string{"admin"}}), "id")
	saKey := h.as(str(ga.do(201, "POST", "/v1/organizations/globex/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"manage"}}), "key"))
	putMember(h, testKey, w.globex, w.ivan, "member")
	imp := h.as(impersonationToken(ga, impersonate(ga, "", w.ivan, "globex", "*")))
	for _, c := range []caller{ga, saKey, imp, app} {
		c.fails(403, "forbidden", "", "POST", "/v1/api-keys", mint)
		c.fails(403, "forbidden", "", "GET", "/v1/api-keys", nil)
		c.fails(403, "forbidden", "", "POST", "/v1/api-keys/"+id+"/rotate", nil)
		c.fails(403, "forbidden", "", "DELETE", "/v1/api-keys/"+id, nil)
	}
	// nor do service-account keys or user tokens reach the graph's check endpoint
	saKey.fails(403, "forbidden", "", "POST", "/v1/check", map[string]any{"resource": "document:globex-plan", "permission": "view", "subject": "user:" + w.gary})

	// the bound key: a wildcard subject, an actor outside, a bulk item with an actor outside
	app.fails(400, "invalid_argument", "subject", "POST", "/v1/check", map[string]any{"resource": "document:globex-plan", "permission": "view", "subject": "user:*"})
	app.fails(403, "forbidden", "", "POST", "/v1/check/bulk", map[string]any{"items": []any{
		map[string]any{"resource": "document:initech-plan", "permission": "view", "subject": "user:" + w.ivan, "actor": "user:" + w.gary}}})
	app.fails(403, "forbidden", "", "POST", "/v1/lookup/subjects", map[string]any{"resource": "organization:" + w.northwind, "permission": "manage", "subjectType": "user"})

	// the secret presented as another kind of key, or altered: 401
	rest := strings.TrimPrefix(secret, "trp.")
	for _, bad := range []string{"trk." + rest, "trp." + rest + "x", "trp.." + rest, "trp." + id + ".", "TRP." + rest} {
		h.as(bad).fails(401, "", "", "POST", "/v1/check", map[string]any{"resource": "document:globex-plan", "permission": "view", "subject": "user:" + w.gary})
	}
	// the secret is in no listing and no audit event
	for _, path := range []string{"/v1/api-keys", "/v1/audit"} {
		if raw, _ := json.Marshal(p.do(200, "GET", path, nil)); strings.Contains(string(raw), strings.Split(rest, ".")[1]) {
			t.Errorf("%s shows the key's secret", path)
		}
	}
}
