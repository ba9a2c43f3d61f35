package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
)

// mountAPIKeys serves the provider API keys (provider admins; never through a key).
func (s *Server) mountAPIKeys(g routes) {
	g.POST("/api-keys", func(c echo.Context) error {
		var in directory.CreateProviderKey
		if err := bind(c, &in); err != nil {
			return err
		}
		k, err := s.dir.CreateProviderKey(c.Request().Context(), principal(c), in)
		return created(c, k, err)
	})
	g.GET("/api-keys", func(c echo.Context) error {
		keys, err := s.dir.ListProviderKeys(c.Request().Context(), principal(c))
		return ok(c, map[string]any{"keys": keys}, err)
	})
	g.POST("/api-keys/:key/rotate", func(c echo.Context) error {
		var in directory.RotateAPIKey
		if err := bindOptional(c, &in); err != nil {
			return err
		}
		k, err := s.dir.RotateProviderKey(c.Request().Context(), principal(c), c.Param("key"), in)
		return created(c, k, err)
	})
	g.DELETE("/api-keys/:key", func(c echo.Context) error {
		err := s.dir.RevokeProviderKey(c.Request().Context(), principal(c), c.Param("key"))
		return noContent(c, err)
	})
}

// scopeOf is the scope a provider API key needs for a route (its pattern, as
// echo matched it) and method; "" means no key may call it (key management,
// minting tokens, impersonating).
func scopeOf(method, route string) string {
	path := strings.TrimPrefix(route, "/v1")
	switch {
	case path == "/check" || path == "/check/bulk" || strings.HasPrefix(path, "/lookup/") || path == "/explain":
		return directory.ScopeCheck
	case path == "/relationships/read":
		return directory.ScopeRelationshipsRead
	case strings.HasPrefix(path, "/relationships/"):
		return directory.ScopeRelationshipsWrite
	case path == "/schema" && method == http.MethodPut:
		return directory.ScopeSchemaWrite
	case strings.HasPrefix(path, "/schema"):
		return directory.ScopeSchemaRead // reads, validation and diffs change nothing
	case path == "/audit" || strings.HasPrefix(path, "/audit/") || strings.HasPrefix(path, "/organizations/:org/audit"):
		return directory.ScopeAuditRead
	case strings.HasPrefix(path, "/access/"):
		return directory.ScopeAccessRead
	case strings.HasPrefix(path, "/api-keys"), path == "/tokens", strings.HasPrefix(path, "/impersonations"):
		return ""
	case method == http.MethodGet || method == http.MethodHead:
		return directory.ScopeDirectoryRead
	}
	return directory.ScopeDirectoryWrite
}

// keyGrant returns the provider API key the request authenticated with, or nil.
func keyGrant(c echo.Context) *directory.KeyGrant {
	if pc, ok := c.(*principalContext); ok {
		return pc.key
	}
	return nil
}

// requireScope refuses a provider API key without the route's scope.
func requireScope(c echo.Context, g *directory.KeyGrant) error {
	sc := scopeOf(c.Request().Method, routeOf(c))
	if sc == "" {
		return fmt.Errorf("%w: API keys cannot call %s %s (the admin key or a provider admin's token can)", trellis.ErrForbidden, c.Request().Method, routeOf(c))
	}
	if !g.Allows(sc) {
		return fmt.Errorf("%w: this API key lacks the %s scope", trellis.ErrForbidden, sc)
	}
	return nil
}

// confined reports whether the request's key confines it to an organization.
func confined(c echo.Context) (string, bool) {
	if g := keyGrant(c); g != nil && g.Org != "" {
		return g.Org, true
	}
	return "", false
}

// confine refuses objects outside the key's organization subtree (403, the
// same for unknown objects: never an answer about another tenant).
func (s *Server) confine(ctx context.Context, org, field string, obj engine.ObjectRef) error {
	in, err := s.confinement.Inside(ctx, org, obj)
	if err != nil {
		return err
	}
	if !in {
		return fmt.Errorf("%w: %s: %s lies outside organization %s, to which this API key is bound", trellis.ErrForbidden, field, obj, org)
	}
	return nil
}

// confineCheck applies confine to a check's resource, subject and actor.
func (s *Server) confineCheck(ctx context.Context, org string, req engine.CheckRequest) error {
	if err := s.confine(ctx, org, "resource", req.Resource); err != nil {
		return err
	}
	return s.confine(ctx, org, "subject", req.Subject.Object)
}

// keepInside keeps the found objects of typ that lie inside org's subtree.
func (s *Server) keepInside(ctx context.Context, org, typ string, found []engine.FoundObject) ([]engine.FoundObject, error) {
	out := found[:0]
	for _, f := range found {
		in, err := s.confinement.Inside(ctx, org, engine.ObjectRef{Type: typ, ID: f.ID})
		if err != nil {
			return nil, err
		}
		if in {
			out = append(out, f)
		}
	}
	return out, nil
}

// pathInside reports whether every object an explain path names lies inside
// org's subtree.
func (s *Server) pathInside(ctx context.Context, org string, path []engine.Relationship) (bool, error) {
	for _, r := range path {
		for _, obj := range []engine.ObjectRef{r.Resource, r.Subject.Object} {
			in, err := s.confinement.Inside(ctx, org, obj)
			if err != nil || !in {
				return false, err
			}
		}
	}
	return true, nil
}
