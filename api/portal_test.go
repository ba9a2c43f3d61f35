package api_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's Chromium, or skips the test when it is absent
// (CI installs it: there it must be present).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// browse starts a headless Chromium and returns a context for chromedp.Run.
func browse(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// TestPortalAsACustomerAdmin drives the admin portal in headless Chromium the
// way a customer admin would: sign in with a token, see their organizations
// (not a sibling's), add a member, invite by email, verify the audit chain;
// another tenant's organization answers as unknown, a bad token is refused.
func TestPortalAsACustomerAdmin(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	ctx := browse(t)
	customer := "organization:" + tr.customer
	newbie := createUser(h, "newbie@customer.example")

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("portal: %v", err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("portal: text of %s: %v", sel, err)
		}
		return v
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	poll := func(expression string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expression)); err != nil {
			t.Fatalf("portal: waiting for %s: %v", expression, err)
		}
	}

	// a bad token is refused and the portal stays on the sign-in form
	do(chromedp.Navigate(h.url+"/portal/"), chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), "not-a-token"), chromedp.Click(css("#signin-form button[type=submit]")),
		chromedp.WaitVisible(css("#error")))
	if got := text("#error"); !strings.Contains(got, "credentials") {
		t.Errorf("bad token: error %q, want the API's 401", got)
	}
	// carla signs in and sees her organizations, not her sibling's
	do(chromedp.SetValue(css("#token"), tr.customerToken), chromedp.Click(css("#signin-form button[type=submit]")),
		chromedp.WaitVisible(css("#org-rows a")))
	if got := text("#org-rows"); !strings.Contains(got, "Customer") || !strings.Contains(got, "Region") || strings.Contains(got, "Sibling") {
		t.Errorf("organizations listed for carla: %q, want Customer and Region, not Sibling", got)
	}
	// her organization's members; she adds newbie
	do(chromedp.Click(css(`#org-rows a[href="#/orgs/customer/members"]`)), chromedp.WaitVisible(css("#member-rows tr")),
		chromedp.SetValue(css("#member-user"), newbie), chromedp.Click(css("#member-form button[type=submit]")),
		chromedp.WaitVisible(css(`#member-rows tr[data-user="`+newbie+`"]`)))
	poll(`document.getElementById("member-rows").textContent.includes("newbie@customer.example")`)
	h.expect(true, customer, "access", "user:"+newbie)
	// an invitation; its token is shown once
	do(chromedp.Click(css("#tab-invitations")), chromedp.WaitVisible(css("#invite-form")),
		chromedp.SendKeys(css("#invite-email"), "guest@customer.example"), chromedp.Click(css("#invite-form button[type=submit]")),
		chromedp.WaitVisible(css("#invite-link")))
	if got := text("#invite-token"); !strings.HasPrefix(got, "inv_") {
		t.Errorf("invitation token shown: %q", got)
	}
	// the audit log, verified
	do(chromedp.Click(css("#tab-audit")), chromedp.WaitVisible(css("#audit-rows tr")), chromedp.Click(css("#verify")))
	poll(`document.getElementById("verify-result").textContent !== ""`)
	if got := text("#verify-result"); !strings.HasPrefix(got, "valid") {
		t.Errorf("audit verify: %q", got)
	}
	// another tenant's organization is not found, as over the API; she stays signed in
	do(chromedp.Navigate(h.url+"/portal/#/orgs/sibling/members"), chromedp.WaitVisible(css("#error")))
	if got := text("#error"); !strings.Contains(got, "not found") {
		t.Errorf("sibling organization: error %q, want not found", got)
	}
	if signedIn, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("signin").hidden`)); err != nil || !signedIn {
		t.Errorf("after a 404 the portal signed carla out (%v)", err)
	}
}
