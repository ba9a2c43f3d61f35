package federation

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// PolicyInput is the body of PUT /v1/organizations/{org}/sso-policy: how the
// organization's users may sign in. It replaces the whole policy.
type PolicyInput struct {
	AllowedSignInMethods []string `json:"allowedSignInMethods"` // oidc, saml; empty = any
	RequiredACR          []string `json:"requiredAcr"`          // the IdP's acr must be one of these; empty = any
	SessionMaxAge        string   `json:"sessionMaxAge"`        // e.g. "8h": refresh stops this long after sign-in; "" = none
}

// Policy is an organization's sign-in policy as clients see it.
type Policy struct {
	Organization         string    `json:"organization"`
	AllowedSignInMethods []string  `json:"allowedSignInMethods"`
	RequiredACR          []string  `json:"requiredAcr"`
	SessionMaxAge        string    `json:"sessionMaxAge,omitempty"`
	UpdatedAt            time.Time `json:"updatedAt,omitzero"`
}

func policyView(org string, p store.SSOPolicy) Policy {
	v := Policy{Organization: org, AllowedSignInMethods: p.AllowedMethods, RequiredACR: p.RequiredACR, UpdatedAt: p.UpdatedAt}
	if v.AllowedSignInMethods == nil {
		v.AllowedSignInMethods = []string{}
	}
	if v.RequiredACR == nil {
		v.RequiredACR = []string{}
	}
	if p.SessionMaxAge > 0 {
		v.SessionMaxAge = p.SessionMaxAge.String()
	}
	return v
}

// GetPolicy returns org's sign-in policy (manage_sso).
func (s *Service) GetPolicy(ctx context.Context, p directory.Principal, org string) (Policy, error) {
	var out Policy
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) error {
		pol, err := tx.GetSSOPolicy(ctx, o.ID)
		if err != nil && !errors.Is(err, trellis.ErrNotFound) {
			return err
		}
		out = policyView(o.ID, pol)
		return nil
	})
	return out, err
}

// PutPolicy sets org's sign-in policy (manage_sso; audited).
func (s *Service) PutPolicy(ctx context.Context, p directory.Principal, org string, in PolicyInput) (Policy, error) {
	pol := store.SSOPolicy{}
	for i, m := range in.AllowedSignInMethods {
		if m != store.ConnectionOIDC && m != store.ConnectionSAML {
			return Policy{}, trellis.Invalid("allowedSignInMethods["+strconv.Itoa(i)+"]", "must be oidc or saml, got %q", m)
		}
		if !slices.Contains(pol.AllowedMethods, m) {
			pol.AllowedMethods = append(pol.AllowedMethods, m)
		}
	}
	if len(in.RequiredACR) > 20 {
		return Policy{}, trellis.Invalid("requiredAcr", "at most 20 values")
	}
	for i, a := range in.RequiredACR {
		if a == "" || len(a) > 200 {
			return Policy{}, trellis.Invalid("requiredAcr["+strconv.Itoa(i)+"]", "must be 1-200 characters")
		}
	}
	pol.RequiredACR = in.RequiredACR
	if in.SessionMaxAge != "" {
		d, err := time.ParseDuration(in.SessionMaxAge)
		if err != nil || d < time.Minute || d > 90*24*time.Hour {
			return Policy{}, trellis.Invalid("sessionMaxAge", "must be a duration between 1m and 2160h, e.g. \"8h\"")
		}
		pol.SessionMaxAge = d
	}
	var out Policy
	err := s.dir.AdministerOrg(ctx, p, org, permManageSSO, "sso_policy.update", func(tx store.Tx, o store.Org, rec directory.Recorder) error {
		pol.Org, pol.UpdatedAt = o.ID, s.cfg.Now().UTC()
		if err := tx.PutSSOPolicy(ctx, pol); err != nil {
			return err
		}
		out = policyView(o.ID, pol)
		rec(o.ID, "sso_policy.update", "organization:"+o.ID, map[string]any{"allowedSignInMethods": out.AllowedSignInMethods,
			"requiredAcr": out.RequiredACR, "sessionMaxAge": out.SessionMaxAge})
		return nil
	})
	return out, err
}

// policyOf reads org's policy (the zero policy when it has none).
func (s *Service) policyOf(ctx context.Context, org string) (store.SSOPolicy, error) {
	var pol store.SSOPolicy
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		pol, err = tx.GetSSOPolicy(ctx, org)
		return err
	})
	if errors.Is(err, trellis.ErrNotFound) {
		return store.SSOPolicy{}, nil
	}
	return pol, err
}

// policyRefusal is the reason org's policy refuses a sign-in by method with acr, or "".
func (s *Service) policyRefusal(ctx context.Context, org, method, acr string) (string, error) {
	pol, err := s.policyOf(ctx, org)
	if err != nil {
		return "", err
	}
	switch {
	case len(pol.AllowedMethods) > 0 && !slices.Contains(pol.AllowedMethods, method):
		return "method_not_allowed", nil
	case len(pol.RequiredACR) > 0 && !slices.Contains(pol.RequiredACR, acr):
		return "acr_insufficient", nil
	}
	return "", nil
}
