package federation

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
)

// Impersonation sign-in. Support staff with a live impersonation (POST
// /v1/impersonations, then …/token) sign in to an application as the
// impersonated user: POST /sso/login with the authorization request and
// impersonation_token. The application's tokens then say who is really
// acting: the access token, the ID token and introspection carry "act"
// (RFC 8693 §4.1) {"sub": <the actor's user id>}. Such a grant gets no
// refresh token (an impersonation never mints lasting authority) and lives
// only while the impersonation does: introspection, userinfo and the Trellis
// API check it at every use. The IdP and the organization's sign-in methods
// are not involved — the impersonation's own approval governs it — but an
// application that requires an acr refuses it.

// accessVerifier verifies Trellis access tokens (the Signer).
type accessVerifier interface {
	Verify(token string) (Verified, error)
}

// GetActor marks the tokens of an impersonation sign-in (op.TokenActorRequest).
func (a *authRequest) GetActor() *oidc.ActorClaims {
	if a.Actor == "" {
		return nil
	}
	return &oidc.ActorClaims{Subject: a.Actor}
}

// GetActor marks refreshed tokens of an impersonation grant.
func (r *refreshRequest) GetActor() *oidc.ActorClaims {
	if r.fam.Actor == "" {
		return nil
	}
	return &oidc.ActorClaims{Subject: r.fam.Actor}
}

// impersonationSignIn completes authorization request a as the target of the
// live impersonation whose token the form carries.
func (s *Service) impersonationSignIn(c echo.Context, a *authRequest) error {
	ctx := c.Request().Context()
	ver, ok := s.keys.(accessVerifier)
	if !ok {
		return s.page(c, http.StatusForbidden, "impersonation_unavailable", "Impersonation sign-in is not available.")
	}
	v, err := ver.Verify(c.FormValue("impersonation_token"))
	if err != nil { // names no organization: not audited (anyone could write to the log)
		return s.page(c, http.StatusUnauthorized, "invalid_token", "The impersonation token is invalid or expired.")
	}
	refuse := func(status int, reason, text string) error {
		s.impersonationRefused(ctx, a.ClientID, v, reason)
		return s.page(c, status, reason, text)
	}
	if v.Actor == "" || v.Impersonation == "" {
		return refuse(http.StatusForbidden, "not_an_impersonation", "Only an impersonation token signs in this way; sign in through your organization.")
	}
	pr, err := s.dir.UserPrincipal(ctx, directory.AccessClaims{User: v.Subject, Org: v.Organization, Actor: v.Actor, Impersonation: v.Impersonation})
	if err != nil {
		return refuse(http.StatusForbidden, "impersonation_not_live", "This impersonation has ended, expired or is not approved.")
	}
	app, err := s.application(ctx, a.ClientID)
	if err != nil {
		return s.page(c, http.StatusBadRequest, "unknown_client", "The application is no longer registered.")
	}
	if app.RequiredACR != "" {
		return refuse(http.StatusForbidden, "acr_insufficient", "This application requires a sign-in through the organization's identity provider ("+app.RequiredACR+").")
	}
	if _, err := s.liveClaims(ctx, pr.ID, pr.Org, a.ClientID); err != nil {
		return refuse(http.StatusForbidden, "not_a_member", "The impersonated user is not an active member of this organization.")
	}
	browser := newSecret()
	a, err = s.op.grants.updateRequest(ctx, a.ID, s.cfg.LoginTTL, func(a *authRequest) error {
		if a.Completed || a.PendingUser != "" {
			return errRequestChanged
		}
		a.UserID, a.Org, a.AuthTime, a.Method = pr.ID, pr.Org, s.cfg.Now(), "impersonation"
		a.Actor, a.Impersonation = v.Actor, pr.Impersonation
		a.Scopes = slices.DeleteFunc(slices.Clone(a.Scopes), func(sc string) bool { return sc == oidc.ScopeOfflineAccess })
		sum := sha256Sum32(browser)
		a.Browser, a.Completed = sum[:], true
		return nil
	})
	switch {
	case errors.Is(err, errRequestChanged), errors.Is(err, trellis.ErrNotFound):
		return s.page(c, http.StatusBadRequest, "unknown_request", "This sign-in was already completed. Start again from the application.")
	case err != nil:
		return err
	}
	s.setBrowserCookie(c, browser)
	if err := s.dir.RecordEvent(ctx, directory.Principal{Kind: "application", ID: a.ClientID, Impersonator: "user:" + v.Actor}, pr.Org,
		"sso.signin", "user:"+pr.ID, map[string]any{"method": "impersonation", "impersonation": pr.Impersonation, "actor": "user:" + v.Actor, "client": a.ClientID}); err != nil {
		s.cfg.Logger.Warn("audit of an impersonation sign-in failed", "err", err)
	}
	return c.Redirect(http.StatusFound, op.AuthCallbackURL(s.op.op)(op.ContextWithIssuer(ctx, s.cfg.Issuer), a.ID))
}

// impersonationRefused audits a refused impersonation sign-in on the
// organization its (verified) token names.
func (s *Service) impersonationRefused(ctx context.Context, clientID string, v Verified, reason string) {
	details := map[string]any{"reason": reason, "method": "impersonation", "client": clientID, "impersonation": v.Impersonation}
	if v.Actor != "" {
		details["actor"] = "user:" + v.Actor
	}
	p := directory.Principal{Kind: "application", ID: clientID}
	if err := s.dir.RecordEvent(ctx, p, v.Organization, "sso.signin.refused", "user:"+v.Subject, details); err != nil {
		s.cfg.Logger.Warn("audit of a refused sign-in failed", "err", err)
	}
}

// liveGrant are the claims of a user grant now — liveClaims, and for an
// impersonation grant only while the impersonation is live.
func (s *Service) liveGrant(ctx context.Context, f family) (map[string]any, error) {
	c, err := s.liveClaims(ctx, f.Subject, f.Org, f.ClientID)
	if err != nil || f.Impersonation == "" {
		return c, err
	}
	if _, err := s.dir.UserPrincipal(ctx, directory.AccessClaims{User: f.Subject, Org: f.Org, Actor: f.Actor, Impersonation: f.Impersonation}); err != nil {
		return nil, errors.New("impersonation ended")
	}
	return c, nil
}
