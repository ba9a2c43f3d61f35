package federation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// Application types.
const (
	AppWeb    = "web"    // a confidential client: has a secret
	AppSPA    = "spa"    // public: PKCE, no secret
	AppNative = "native" // public: PKCE, no secret
)

// ApplicationInput is the body of POST and PATCH /v1/applications.
type ApplicationInput struct {
	Name                   *string  `json:"name"`
	Type                   string   `json:"type"`
	RedirectURIs           []string `json:"redirectUris"`
	PostLogoutRedirectURIs []string `json:"postLogoutRedirectUris"`
	RequiredACR            *string  `json:"requiredAcr"`
}

// Application is an application as clients see it; ClientSecret only in the
// answer to its creation.
type Application struct {
	ID                     string    `json:"id"`
	ClientID               string    `json:"clientId"`
	ClientSecret           string    `json:"clientSecret,omitempty"`
	Name                   string    `json:"name"`
	Type                   string    `json:"type"`
	RedirectURIs           []string  `json:"redirectUris"`
	PostLogoutRedirectURIs []string  `json:"postLogoutRedirectUris"`
	RequiredACR            string    `json:"requiredAcr,omitempty"`
	CreatedAt              time.Time `json:"createdAt"`
	UpdatedAt              time.Time `json:"updatedAt"`
}

func applicationView(a store.Application) Application {
	v := Application{ID: a.ID, ClientID: a.ClientID, Name: a.Name, Type: a.Type, RedirectURIs: a.RedirectURIs,
		PostLogoutRedirectURIs: a.PostLogout, RequiredACR: a.RequiredACR, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	if v.RedirectURIs == nil {
		v.RedirectURIs = []string{}
	}
	if v.PostLogoutRedirectURIs == nil {
		v.PostLogoutRedirectURIs = []string{}
	}
	return v
}

func secretHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// secretMatches compares a presented client secret with the stored hash in constant time.
func secretMatches(a store.Application, secret string) bool {
	if len(a.SecretHash) == 0 || secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare(secretHash(secret), a.SecretHash) == 1
}

// validRedirectURIs: 1-20 absolute URIs without fragment; https, or http on
// loopback, or (native apps) a private-use scheme. Matched exactly at sign-in.
func validRedirectURIs(field string, uris []string, appType string, required bool) ([]string, error) {
	if len(uris) == 0 && required {
		return nil, trellis.Invalid(field, "at least one redirect URI is required")
	}
	if len(uris) > 20 {
		return nil, trellis.Invalid(field, "at most 20")
	}
	out := make([]string, 0, len(uris))
	for i, raw := range uris {
		f := field + "[" + strconv.Itoa(i) + "]"
		u, err := url.Parse(raw)
		if err != nil || !u.IsAbs() || u.Fragment != "" || u.User != nil || len(raw) > 2048 {
			return nil, trellis.Invalid(f, "must be an absolute URI without a fragment")
		}
		switch u.Scheme {
		case "https":
		case "http":
			host := u.Hostname()
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return nil, trellis.Invalid(f, "must be https (http only on loopback)")
			}
		default:
			if appType != AppNative || !strings.Contains(u.Scheme, ".") {
				return nil, trellis.Invalid(f, "must be https (native apps: a reverse-DNS private-use scheme)")
			}
		}
		if u.Host == "" && appType != AppNative {
			return nil, trellis.Invalid(f, "must name a host")
		}
		out = append(out, raw)
	}
	return out, nil
}

func applyApplication(a *store.Application, in ApplicationInput, creating bool) error {
	if creating {
		switch in.Type {
		case AppWeb, AppSPA, AppNative:
			a.Type = in.Type
		case "":
			return trellis.Invalid("type", "is required (web, spa or native)")
		default:
			return trellis.Invalid("type", "must be web, spa or native, got %q", in.Type)
		}
	} else if in.Type != "" && in.Type != a.Type {
		return trellis.Invalid("type", "cannot change (%s)", a.Type)
	}
	if in.Name != nil {
		a.Name = strings.TrimSpace(*in.Name)
	}
	if a.Name == "" || len(a.Name) > 200 {
		return trellis.Invalid("name", "must be 1-200 characters")
	}
	if in.RedirectURIs != nil || creating {
		uris, err := validRedirectURIs("redirectUris", in.RedirectURIs, a.Type, true)
		if err != nil {
			return err
		}
		a.RedirectURIs = uris
	}
	if in.PostLogoutRedirectURIs != nil {
		uris, err := validRedirectURIs("postLogoutRedirectUris", in.PostLogoutRedirectURIs, a.Type, false)
		if err != nil {
			return err
		}
		a.PostLogout = uris
	}
	if in.RequiredACR != nil {
		if len(*in.RequiredACR) > 200 {
			return trellis.Invalid("requiredAcr", "must be at most 200 characters")
		}
		a.RequiredACR = *in.RequiredACR
	}
	return nil
}

// CreateApplication registers an application (provider admins). A web
// application's secret is in the answer only; Trellis keeps its SHA-256.
func (s *Service) CreateApplication(ctx context.Context, p directory.Principal, in ApplicationInput) (Application, error) {
	var out Application
	err := s.dir.AdministerPlatform(ctx, p, "application.create", func(tx store.Tx, rec directory.Recorder) error {
		now := s.cfg.Now().UTC()
		a := store.Application{ID: newID("app"), ClientID: newID("cl"), CreatedBy: p.Actor(), CreatedAt: now, UpdatedAt: now}
		if err := applyApplication(&a, in, true); err != nil {
			return err
		}
		var secret string
		if a.Type == AppWeb {
			secret = newSecret()
			a.SecretHash = secretHash(secret)
		}
		if err := tx.InsertApplication(ctx, a); err != nil {
			return err
		}
		rec("", "application.create", "application:"+a.ID, map[string]any{"type": a.Type, "redirectUris": a.RedirectURIs})
		out = applicationView(a)
		out.ClientSecret = secret
		return nil
	})
	return out, err
}

// ListApplications lists applications (provider admins).
func (s *Service) ListApplications(ctx context.Context, p directory.Principal) ([]Application, error) {
	if err := s.requireProvider(ctx, p); err != nil {
		return nil, err
	}
	out := []Application{}
	err := s.store.Read(ctx, func(tx store.Tx) error {
		apps, err := tx.ListApplications(ctx)
		for _, a := range apps {
			out = append(out, applicationView(a))
		}
		return err
	})
	return out, err
}

func (s *Service) requireProvider(ctx context.Context, p directory.Principal) error {
	ok, err := s.dir.IsProvider(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return trellis.ErrForbidden
	}
	return nil
}

// GetApplication returns one application (provider admins).
func (s *Service) GetApplication(ctx context.Context, p directory.Principal, id string) (Application, error) {
	if err := s.requireProvider(ctx, p); err != nil {
		return Application{}, err
	}
	var out Application
	err := s.store.Read(ctx, func(tx store.Tx) error {
		a, err := tx.GetApplication(ctx, id)
		out = applicationView(a)
		return err
	})
	return out, err
}

// UpdateApplication changes an application (provider admins).
func (s *Service) UpdateApplication(ctx context.Context, p directory.Principal, id string, in ApplicationInput) (Application, error) {
	var out Application
	err := s.dir.AdministerPlatform(ctx, p, "application.update", func(tx store.Tx, rec directory.Recorder) error {
		a, err := tx.GetApplication(ctx, id)
		if err != nil {
			return err
		}
		if err := applyApplication(&a, in, false); err != nil {
			return err
		}
		a.UpdatedAt = s.cfg.Now().UTC()
		if err := tx.UpdateApplication(ctx, a); err != nil {
			return err
		}
		rec("", "application.update", "application:"+a.ID, map[string]any{"redirectUris": a.RedirectURIs})
		out = applicationView(a)
		return nil
	})
	return out, err
}

// DeleteApplication removes an application; its tokens stop working (introspection, refresh).
func (s *Service) DeleteApplication(ctx context.Context, p directory.Principal, id string) error {
	err := s.dir.AdministerPlatform(ctx, p, "application.delete", func(tx store.Tx, rec directory.Recorder) error {
		a, err := tx.GetApplication(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteApplication(ctx, id); err != nil {
			return err
		}
		rec("", "application.delete", "application:"+id, nil)
		// its grants end with it, on every node (the provider's state is in the store)
		_, err = tx.RevokeGrants(ctx, store.GrantFilter{ClientID: a.ClientID}, s.cfg.Now())
		return err
	})
	return err
}
