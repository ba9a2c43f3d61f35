package api_test

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// startNodeIdP runs the npm oidc-provider IdP (federation/testdata/oidc-provider)
// on loopback and returns its issuer. It installs the locked dependencies
// (npm ci) when they are missing. Without node it skips, except in CI.
func startNodeIdP(t *testing.T, env ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI for the oidc-provider IdP")
		}
		t.Skip("node is not installed: the npm oidc-provider IdP test is skipped")
	}
	dir, _ := filepath.Abs("../federation/testdata/oidc-provider")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		out, err := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--prefix", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	cmd := exec.Command(node, filepath.Join(dir, "server.mjs"))
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("oidc-provider IdP did not start: %v", err)
	}
	var hello struct{ Issuer string }
	if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Issuer == "" {
		t.Fatalf("oidc-provider IdP said %q", line)
	}
	return hello.Issuer
}

// TestSSOWithNodeOIDCProvider: an app signs a user in through an
// organization whose IdP is the npm oidc-provider package, a real OpenID
// provider (discovery, its own keys, PKCE, RFC 9207 iss), on loopback.
func TestSSOWithNodeOIDCProvider(t *testing.T) {
	h := newSSOHarness(t)
	issuer := startNodeIdP(t, "IDP_SUB=node-alice", "IDP_EMAIL=alice@initech.example", "IDP_GROUPS=staff,admins",
		"IDP_CLIENT_ID=trellis", "IDP_CLIENT_SECRET=node-secret", "IDP_REDIRECT_URI="+h.url+"/sso/oidc/callback")
	org := createOrg(h, testKey, "Initech", "initech", "")
	p := h.provider()
	p.do(201, "POST", "/v1/organizations/initech/connections", map[string]any{
		"type": "oidc", "issuer": issuer, "clientId": "trellis", "clientSecret": "node-secret",
		"roleMapping": []map[string]any{{"claim": "groups", "value": "admins", "roles": []string{"admin"}}},
	})
	w := &ssoWorld{h: h, org: org, app: registerApp(h)}
	code, verifier := w.signIn(newBrowser(t), url.Values{"organization": {"initech"}})
	status, tok := w.exchange(code, verifier)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	id := w.app.verifyIDToken(str(tok, "id_token"))
	if id["org"] != org || id["org_slug"] != "initech" || id["email"] != "alice@initech.example" || !slices.Contains(strs(id["org_roles"]), "admin") {
		t.Fatalf("id_token claims %v: want org initech, alice's email, role admin", id)
	}
}
