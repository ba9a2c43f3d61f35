package federation

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// loginCookie binds a sign-in in flight to the browser that started it: the
// IdP's answer is accepted only with the cookie set when the browser left.
const loginCookie = "trellis_sso"

// pendingLogin is a sign-in waiting for the IdP's answer, keyed by state
// (in the store, grants.go).
type pendingLogin struct {
	AuthRequest string // the application's authorization request ("" for a connection test)
	Org         string // the organization being signed in to
	Connection  string
	Nonce       string
	Verifier    string // PKCE verifier towards the IdP
	Browser     [32]byte
	CreatedAt   time.Time
	TestBy      string // audit actor of an admin testing the connection
}

// Route is one HTTP route sign-in serves; api mounts them in one place.
type Route struct {
	Method, Path string
	Handler      echo.HandlerFunc
}

// PublicRoutes are the browser- and application-facing routes (no Trellis
// credentials: the OAuth2 endpoints authenticate clients themselves).
func (s *Service) PublicRoutes() []Route {
	opH := func(c echo.Context) error { // resolved per request: routes mount before the provider serves
		s.op.handler.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	authorize := func(c echo.Context) error {
		r := c.Request()
		org := r.URL.Query().Get("organization")
		if len(org) > 200 {
			return s.page(c, http.StatusBadRequest, "invalid_request", "organization is too long")
		}
		r = r.WithContext(withOrgHint(r.Context(), org))
		c.SetRequest(r)
		return opH(c)
	}
	return []Route{
		{http.MethodGet, "/.well-known/openid-configuration", opH},
		{http.MethodGet, "/" + pathAuthorize, authorize},
		{http.MethodPost, "/" + pathAuthorize, authorize},
		{http.MethodGet, "/" + pathAuthorize + "/callback", func(c echo.Context) error {
			// the code goes only to the browser that signed in
			a, ok := s.op.grants.request(c.Request().Context(), c.QueryParam("id"))
			if !ok || !s.sameBrowser(c, a) {
				return s.page(c, http.StatusBadRequest, "browser_mismatch", "This sign-in was started in another browser or expired.")
			}
			return opH(c)
		}},
		{http.MethodPost, "/" + pathToken, opH},
		{http.MethodPost, "/" + pathIntrospect, opH},
		{http.MethodGet, "/" + pathUserinfo, opH},
		{http.MethodPost, "/" + pathUserinfo, opH},
		{http.MethodPost, "/" + pathRevoke, opH},
		{http.MethodGet, "/" + pathEndSession, opH},
		{http.MethodGet, "/sso/discover", s.discover},
		{http.MethodGet, "/sso/login", s.loginStart},
		{http.MethodPost, "/sso/login", s.loginStart},
		{http.MethodGet, "/sso/oidc/callback", s.oidcCallback},
		{http.MethodGet, "/sso/pick", s.pick},
		{http.MethodPost, "/sso/pick", s.pick},
		{http.MethodGet, "/login/:org", s.hostedLogin},
		{http.MethodGet, "/sso/test", s.startTest},
		{http.MethodPost, "/sso/saml/:connection/acs", s.samlACS},
		{http.MethodGet, "/sso/saml/:connection/metadata", s.samlMetadata},
	}
}

// Discovery is the answer of GET /sso/discover.
type Discovery struct {
	Organization string `json:"organization"`
	Connection   string `json:"connection"`
	LoginURL     string `json:"loginUrl"`
}

// Discover finds the organization that verified email's domain and its
// connection; anything else is not found.
func (s *Service) Discover(ctx context.Context, email string) (Discovery, error) {
	addr, err := directory.NormalizeEmail("email", email)
	if err != nil {
		return Discovery{}, err
	}
	var out Discovery
	err = s.store.Read(ctx, func(tx store.Tx) error {
		org, err := tx.OrgByVerifiedDomain(ctx, addr[strings.LastIndexByte(addr, '@')+1:])
		if err != nil {
			return notFound("organization for domain", "")
		}
		c, err := connectionFor(ctx, tx, org, "")
		if err != nil {
			return err
		}
		out = Discovery{Organization: org.ID, Connection: c.ID,
			LoginURL: s.cfg.Issuer + "/login/" + url.PathEscape(org.Slug) + "?login_hint=" + url.QueryEscape(addr)}
		return nil
	})
	return out, err
}

func (s *Service) discover(c echo.Context) error {
	d, err := s.Discover(c.Request().Context(), c.QueryParam("email"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// connectionFor picks the enabled connection org signs in through: its own
// (want, or the first by id), else the nearest ancestor's shared one.
func connectionFor(ctx context.Context, tx store.Tx, org store.Org, want string) (store.Connection, error) {
	for cur, own := org, true; ; own = false {
		cs, err := tx.ListConnections(ctx, cur.ID)
		if err != nil {
			return store.Connection{}, err
		}
		for _, c := range cs {
			if c.Enabled && (own || c.ShareWithSubOrgs) && (want == "" || c.ID == want) {
				return c, nil
			}
		}
		if cur.Parent == "" {
			return store.Connection{}, notFound("connection for organization", org.Slug)
		}
		if cur, err = tx.GetOrg(ctx, cur.Parent); err != nil {
			return store.Connection{}, err
		}
	}
}

// orgByRef resolves an organization by id or slug.
func orgByRef(ctx context.Context, tx store.Tx, ref string) (store.Org, error) {
	if strings.HasPrefix(ref, "org_") {
		return tx.GetOrg(ctx, ref)
	}
	return tx.GetOrgBySlug(ctx, strings.ToLower(ref))
}

// loginStart is where an authorization request lands (the client's
// LoginURL): it finds the organization (organization=, login_hint's verified
// domain, or an email the user types) and sends the browser to its IdP.
func (s *Service) loginStart(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.FormValue("authRequestID")
	a, ok := s.op.grants.request(ctx, id)
	if !ok || !(*opStorage)(s.op).live(a) {
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in expired or is unknown. Start again from the application.")
	}
	if a.Completed || a.PendingUser != "" { // a completed sign-in is not run again for another user
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in was already completed. Start again from the application.")
	}
	if c.Request().Method == http.MethodPost && c.FormValue("impersonation_token") != "" {
		return s.impersonationSignIn(c, a) // impersonation.go
	}
	orgRef, email := a.OrgHint, a.LoginHint
	if v := c.FormValue("organization"); c.Request().Method == http.MethodPost && v != "" {
		orgRef = v
	}
	if v := c.FormValue("email"); c.Request().Method == http.MethodPost && v != "" {
		email = v
	}
	var org store.Org
	var conn store.Connection
	err := s.store.Read(ctx, func(tx store.Tx) error {
		var err error
		switch {
		case orgRef != "":
			org, err = orgByRef(ctx, tx, orgRef)
		case email != "":
			addr, perr := directory.NormalizeEmail("email", email)
			if perr != nil {
				return perr
			}
			org, err = tx.OrgByVerifiedDomain(ctx, addr[strings.LastIndexByte(addr, '@')+1:])
		default:
			return errNeedEmail
		}
		if err != nil {
			return notFound("organization", orgRef)
		}
		conn, err = connectionFor(ctx, tx, org, "")
		return err
	})
	switch {
	case errors.Is(err, errNeedEmail):
		return s.emailPage(c, id, store.Org{}, "")
	case errors.Is(err, trellis.ErrNotFound), errors.As(err, new(*trellis.ValidationError)):
		return s.emailPage(c, id, store.Org{}, "No organization signs in with this address. Check it, or ask your administrator.")
	case err != nil:
		return err
	}
	if org.Status == store.StatusSuspended {
		s.refused(ctx, conn, org.ID, "organization_suspended")
		return s.page(c, http.StatusForbidden, "organization_suspended", "This organization is suspended: sign-in is refused.")
	}
	return s.redirectToIdP(c, conn, org.ID, id, "")
}

// sameBrowser: the request carries the login cookie of the browser that signed a in.
func (s *Service) sameBrowser(c echo.Context, a *authRequest) bool {
	ck, err := c.Cookie(loginCookie)
	if err != nil {
		return false
	}
	sum := sha256Sum32(ck.Value)
	return len(a.Browser) == len(sum) && subtle.ConstantTimeCompare(sum[:], a.Browser) == 1
}

func sha256Sum32(v string) [32]byte { return sha256.Sum256([]byte(v)) }

var errNeedEmail = errors.New("need an email")

// redirectToIdP starts the IdP round trip of a sign-in (or a connection test).
func (s *Service) redirectToIdP(c echo.Context, conn store.Connection, org, authRequest, testBy string) error {
	ctx := c.Request().Context()
	if conn.Type != store.ConnectionOIDC {
		return s.samlRedirect(c, conn, org, authRequest, testBy)
	}
	o, err := s.oidcConnector(ctx, conn)
	if err != nil {
		s.refused(ctx, conn, org, "idp_unavailable")
		return s.page(c, http.StatusBadGateway, "idp_unavailable", "Your organization's identity provider could not be reached.")
	}
	state, nonce, verifier, browser := newSecret(), newSecret(), newSecret(), newSecret()
	p := &pendingLogin{AuthRequest: authRequest, Org: org, Connection: conn.ID, Nonce: nonce, Verifier: verifier,
		Browser: sha256Sum32(browser), CreatedAt: s.cfg.Now(), TestBy: testBy}
	if err := s.putPending(ctx, pendingSignIn, state, p); err != nil {
		return err
	}
	s.setBrowserCookie(c, browser)
	u, err := o.LoginURL(ctx, state, nonce, verifier)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusFound, u)
}

func (s *Service) setBrowserCookie(c echo.Context, value string) {
	// SAML answers by a cross-site POST: over https the cookie is SameSite=None
	// (and Secure); over http (local runs) browsers default it to Lax.
	ck := &http.Cookie{Name: loginCookie, Value: value, Path: "/sso/", HttpOnly: true, MaxAge: int(s.cfg.LoginTTL.Seconds())}
	if strings.HasPrefix(s.cfg.Issuer, "https:") {
		ck.Secure, ck.SameSite = true, http.SameSiteNoneMode
	}
	c.SetCookie(ck)
}

// claimPending takes the sign-in of state, checking it is live and bound to this browser.
func (s *Service) claimPending(c echo.Context, state string) (*pendingLogin, string) {
	if state == "" {
		return nil, "missing_state"
	}
	p, ok := s.takePending(c.Request().Context(), pendingSignIn, state)
	if !ok {
		return nil, "unknown_state"
	}
	if s.cfg.Now().Sub(p.CreatedAt) >= s.cfg.LoginTTL {
		return nil, "expired_state"
	}
	ck, err := c.Cookie(loginCookie)
	if err != nil {
		return p, "browser_mismatch"
	}
	sum := sha256.Sum256([]byte(ck.Value))
	if subtle.ConstantTimeCompare(sum[:], p.Browser[:]) != 1 {
		return p, "browser_mismatch"
	}
	return p, ""
}

// oidcCallback is where customer OIDC IdPs send the browser back.
func (s *Service) oidcCallback(c echo.Context) error {
	ctx := c.Request().Context()
	q := c.Request().URL.Query()
	p, bad := s.claimPending(c, q.Get("state"))
	if p == nil {
		return s.page(c, http.StatusBadRequest, bad, "This sign-in is unknown or expired. Start again from the application.")
	}
	conn, org, err := s.loadConnection(ctx, p)
	if err != nil {
		return s.page(c, http.StatusBadRequest, "unknown_connection", "This sign-in's connection no longer exists.")
	}
	if bad != "" {
		s.refused(ctx, conn, p.Org, bad)
		return s.page(c, http.StatusBadRequest, bad, "This sign-in was started in another browser.")
	}
	if e := q.Get("error"); e != "" {
		s.refused(ctx, conn, p.Org, "idp_error")
		return s.page(c, http.StatusForbidden, "idp_error", "Your identity provider refused the sign-in.")
	}
	if iss := q.Get("iss"); iss != "" && iss != conn.Issuer { // RFC 9207: mix-up
		s.refused(ctx, conn, p.Org, "issuer_mismatch")
		return s.page(c, http.StatusForbidden, "issuer_mismatch", "The answer came from another identity provider.")
	}
	o, err := s.oidcConnector(ctx, conn)
	if err != nil {
		s.refused(ctx, conn, p.Org, "idp_unavailable")
		return s.page(c, http.StatusBadGateway, "idp_unavailable", "Your organization's identity provider could not be reached.")
	}
	id, err := o.HandleCallback(ctx, q.Get("code"), p.Nonce, p.Verifier)
	if err != nil {
		s.refusedWith(ctx, conn, p.Org, "invalid_assertion", err.Error())
		return s.page(c, http.StatusForbidden, "invalid_assertion", "The identity provider's answer could not be verified.")
	}
	return s.finish(c, p, conn, org, id, "oidc")
}

func (s *Service) loadConnection(ctx context.Context, p *pendingLogin) (store.Connection, store.Org, error) {
	var conn store.Connection
	var org store.Org
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		if conn, err = tx.GetConnection(ctx, p.Connection); err != nil {
			return err
		}
		org, err = tx.GetOrg(ctx, p.Org)
		return err
	})
	return conn, org, err
}

// finish turns a verified IdP identity into a signed-in user (through the
// directory) and completes the application's authorization request.
func (s *Service) finish(c echo.Context, p *pendingLogin, conn store.Connection, org store.Org, id Identity, method string) error {
	ctx := c.Request().Context()
	roles := mapRoles(conn.RoleMapping, id.Claims)
	if p.TestBy != "" {
		s.audit(ctx, "", org.ID, "connection.test", "connection:"+conn.ID, map[string]any{"by": p.TestBy, "subject": id.Subject, "roles": roles})
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "connection": conn.ID, "subject": id.Subject, "email": id.Email,
			"emailVerified": id.EmailVerified, "roles": roles, "claims": id.Claims})
	}
	if !conn.Enabled {
		s.refused(ctx, conn, org.ID, "connection_disabled")
		return s.page(c, http.StatusForbidden, "connection_disabled", "This sign-in method is disabled for your organization.")
	}
	a, ok := s.op.grants.request(ctx, p.AuthRequest)
	if !ok || !(*opStorage)(s.op).live(a) {
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in expired. Start again from the application.")
	}
	app, err := s.application(ctx, a.ClientID)
	if err != nil {
		return s.page(c, http.StatusBadRequest, "unknown_client", "The application is no longer registered.")
	}
	if app.RequiredACR != "" && id.ACR != app.RequiredACR {
		s.refused(ctx, conn, org.ID, "acr_insufficient")
		return s.page(c, http.StatusForbidden, "acr_insufficient", "This application needs a stronger sign-in ("+app.RequiredACR+") than your identity provider performed.")
	}
	if reason, err := s.policyRefusal(ctx, org.ID, method, id.ACR); err != nil {
		return err
	} else if reason != "" {
		s.refused(ctx, conn, org.ID, reason)
		return s.page(c, http.StatusForbidden, reason, refusalText(reason))
	}
	res, err := s.dir.SignInSSO(ctx, directory.SSOSignIn{Org: org.ID, Connection: conn.ID,
		Authority: cmp.Or(conn.ConfiguredBy, conn.CreatedBy), AuthorityKey: conn.ConfiguredKey, AuthorityLimit: conn.ConfiguredLimit,
		Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified, Name: id.Name, Roles: roles, Method: method,
		JIT: conn.JIT, RecreateRemoved: conn.RecreateRemoved})
	var refused *directory.SignInRefused
	switch {
	case errors.As(err, &refused):
		return s.page(c, http.StatusForbidden, refused.Reason, refusalText(refused.Reason))
	case errors.Is(err, trellis.ErrForbidden):
		return s.page(c, http.StatusForbidden, "not_allowed", "Your organization's sign-in settings do not allow this sign-in.")
	case err != nil:
		return err
	}
	amr := id.AMR
	if len(amr) == 0 {
		amr = []string{"fed"}
	}
	choices, err := s.choices(ctx, conn, res.User.ID, org.ID)
	if err != nil {
		return err
	}
	a, err = s.op.grants.updateRequest(ctx, a.ID, s.cfg.LoginTTL, func(a *authRequest) error {
		if a.Completed || a.PendingUser != "" {
			return errRequestChanged
		}
		a.AuthTime, a.AMR, a.ACR, a.Method = s.cfg.Now(), amr, id.ACR, method
		a.ConnectionID, a.ConnectionType, a.Browser = conn.ID, conn.Type, p.Browser[:]
		if len(choices) > 1 {
			a.PendingUser, a.Choices = res.User.ID, choices
		} else {
			a.UserID, a.Org, a.Completed = res.User.ID, org.ID, true
		}
		return nil
	})
	switch {
	case errors.Is(err, errRequestChanged), errors.Is(err, trellis.ErrNotFound):
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in was already completed. Start again from the application.")
	case err != nil:
		return err
	case !a.Completed:
		return c.Redirect(http.StatusFound, s.cfg.Issuer+"/sso/pick?authRequestID="+url.QueryEscape(a.ID))
	}
	return c.Redirect(http.StatusFound, op.AuthCallbackURL(s.op.op)(op.ContextWithIssuer(ctx, s.cfg.Issuer), a.ID))
}

// choices are the organizations a signed-in user may enter through conn:
// first the one signed in to, then the user's other active memberships the
// connection reaches (its own organization and, when shared, its subtree).
func (s *Service) choices(ctx context.Context, conn store.Connection, user, signedIn string) ([]string, error) {
	out := []string{signedIn}
	err := s.store.Read(ctx, func(tx store.Tx) error {
		ms, err := tx.UserMemberships(ctx, user)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Org == signedIn || m.Status != store.StatusActive {
				continue
			}
			org, err := tx.GetOrg(ctx, m.Org)
			if err != nil || org.Status != store.StatusActive {
				continue
			}
			if reaches(ctx, tx, conn, org) {
				out = append(out, org.ID)
			}
		}
		return nil
	})
	return out, err
}

// reaches: conn may sign users in to org (its own, or a descendant when shared).
func reaches(ctx context.Context, tx store.Tx, conn store.Connection, org store.Org) bool {
	if org.ID == conn.Org {
		return true
	}
	if !conn.ShareWithSubOrgs {
		return false
	}
	for cur := org; cur.Parent != ""; {
		if cur.Parent == conn.Org {
			return true
		}
		var err error
		if cur, err = tx.GetOrg(ctx, cur.Parent); err != nil {
			return false
		}
	}
	return false
}

// pick is the organization picker: a user who may enter several
// organizations chooses the one the application's tokens will carry.
func (s *Service) pick(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.FormValue("authRequestID")
	a, ok := s.op.grants.request(ctx, id)
	if !ok || !(*opStorage)(s.op).live(a) {
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in expired. Start again from the application.")
	}
	if !s.sameBrowser(c, a) {
		return s.page(c, http.StatusBadRequest, "browser_mismatch", "This sign-in was started in another browser.")
	}
	user, choices := a.PendingUser, a.Choices
	if user == "" || len(choices) == 0 {
		return s.page(c, http.StatusBadRequest, "unknown_request", "There is nothing to choose for this sign-in.")
	}
	if c.Request().Method == http.MethodGet {
		var orgs []store.Org
		err := s.store.Read(ctx, func(tx store.Tx) error {
			for _, o := range choices {
				org, err := tx.GetOrg(ctx, o)
				if err != nil {
					return err
				}
				orgs = append(orgs, org)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return s.pickerPage(c, id, orgs)
	}
	want := c.FormValue("organization")
	if !slices.Contains(choices, want) {
		return s.page(c, http.StatusForbidden, "not_a_choice", "You cannot sign in to this organization here.")
	}
	if _, err := s.liveClaims(ctx, user, want, a.ClientID); err != nil {
		return s.page(c, http.StatusForbidden, "membership_not_active", "Your membership in this organization is not active.")
	}
	if reason, err := s.policyRefusal(ctx, want, a.Method, a.ACR); err != nil {
		return err
	} else if reason != "" {
		s.refused(ctx, a.connection(), want, reason)
		return s.page(c, http.StatusForbidden, reason, refusalText(reason))
	}
	a, err := s.op.grants.updateRequest(ctx, id, s.cfg.LoginTTL, func(a *authRequest) error {
		if a.PendingUser != user { // picked twice at once
			return errRequestChanged
		}
		a.UserID, a.Org, a.Completed, a.PendingUser, a.Choices = user, want, true, "", nil
		return nil
	})
	switch {
	case errors.Is(err, errRequestChanged), errors.Is(err, trellis.ErrNotFound):
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in was already completed.")
	case err != nil:
		return err
	}
	return c.Redirect(http.StatusFound, op.AuthCallbackURL(s.op.op)(op.ContextWithIssuer(ctx, s.cfg.Issuer), a.ID))
}

// refused audits a sign-in refused before the directory saw it.
func (s *Service) refused(ctx context.Context, conn store.Connection, org, reason string) {
	s.refusedWith(ctx, conn, org, reason, "")
}

func (s *Service) refusedWith(ctx context.Context, conn store.Connection, org, reason, detail string) {
	details := map[string]any{"reason": reason, "method": conn.Type}
	if detail != "" {
		if len(detail) > 300 {
			detail = detail[:300]
		}
		details["detail"] = detail
	}
	p := directory.Principal{Kind: directory.KindConnection, ID: conn.ID, Org: org}
	if err := s.dir.RecordEvent(ctx, p, org, "sso.signin.refused", "connection:"+conn.ID, details); err != nil {
		s.cfg.Logger.Warn("audit of a refused sign-in failed", "err", err)
	}
}

func refusalText(reason string) string {
	switch reason {
	case "organization_suspended":
		return "This organization is suspended: sign-in is refused."
	case "user_suspended":
		return "Your account is suspended."
	case "membership_suspended":
		return "Your membership in this organization is suspended."
	case "membership_removed":
		return "An administrator removed you from this organization."
	case "unlinked_email":
		return "An account with this email exists but cannot be linked to this sign-in. Ask your administrator."
	case "method_not_allowed":
		return "Your organization does not allow this sign-in method."
	case "acr_insufficient":
		return "Your organization requires a stronger sign-in than your identity provider performed."
	case "session_max_age":
		return "Your session is older than your organization allows: sign in again."
	case "connection_authority":
		return "This sign-in connection was configured with an API key that is no longer valid. Ask your administrator to save its settings again."
	case "jit_disabled", "not_a_member":
		return "You are not a member of this organization. Ask your administrator."
	}
	return "Sign-in refused (" + reason + ")."
}

// startTest runs a connection test: a sign-in at the IdP whose result is
// shown, creating and linking nothing.
func (s *Service) startTest(c echo.Context) error {
	ctx := c.Request().Context()
	t, ok := s.takePending(ctx, pendingTest, c.QueryParam("ticket"))
	if !ok || s.cfg.Now().Sub(t.CreatedAt) >= s.cfg.LoginTTL {
		return s.page(c, http.StatusBadRequest, "unknown_test", "This connection test is unknown or expired.")
	}
	conn, _, err := s.loadConnection(ctx, t)
	if err != nil {
		return s.page(c, http.StatusBadRequest, "unknown_connection", "This connection no longer exists.")
	}
	return s.redirectToIdP(c, conn, t.Org, "", t.TestBy)
}
