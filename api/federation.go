package api

import (
	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/federation"
)

// mountFederation mounts sign-in: the connection and application endpoints
// under /v1 (Trellis credentials), and sign-in's own public routes (browser
// flows and the OAuth2/OIDC endpoints, which authenticate clients themselves).
func (s *Server) mountFederation(root, v1 routes) {
	for _, r := range s.fed.PublicRoutes() {
		root.add(r.Method, r.Path, r.Handler)
	}
	v1.POST("/organizations/:org/connections", s.createConnection)
	v1.GET("/organizations/:org/connections", s.listConnections)
	v1.GET("/organizations/:org/connections/:connection", s.getConnection)
	v1.PATCH("/organizations/:org/connections/:connection", s.patchConnection)
	v1.DELETE("/organizations/:org/connections/:connection", s.deleteConnection)
	v1.POST("/organizations/:org/connections/:connection/test", s.testConnection)
	v1.POST("/organizations/:org/connections/:connection/refresh-metadata", s.refreshConnectionMetadata)

	v1.GET("/organizations/:org/sso-policy", s.getSSOPolicy)
	v1.PUT("/organizations/:org/sso-policy", s.putSSOPolicy)

	v1.POST("/applications", s.createApplication)
	v1.GET("/applications", s.listApplications)
	v1.GET("/applications/:app", s.getApplication)
	v1.PATCH("/applications/:app", s.patchApplication)
	v1.DELETE("/applications/:app", s.deleteApplication)
}

func (s *Server) createConnection(c echo.Context) error {
	var in federation.ConnectionInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := s.fed.CreateConnection(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, v, err)
}

func (s *Server) listConnections(c echo.Context) error {
	v, err := s.fed.ListConnections(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"connections": v}, err)
}

func (s *Server) getConnection(c echo.Context) error {
	v, err := s.fed.GetConnection(c.Request().Context(), principal(c), c.Param("org"), c.Param("connection"))
	return ok(c, v, err)
}

func (s *Server) patchConnection(c echo.Context) error {
	var in federation.ConnectionInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := s.fed.UpdateConnection(c.Request().Context(), principal(c), c.Param("org"), c.Param("connection"), in)
	return ok(c, v, err)
}

func (s *Server) deleteConnection(c echo.Context) error {
	return noContent(c, s.fed.DeleteConnection(c.Request().Context(), principal(c), c.Param("org"), c.Param("connection")))
}

func (s *Server) testConnection(c echo.Context) error {
	v, err := s.fed.TestConnection(c.Request().Context(), principal(c), c.Param("org"), c.Param("connection"))
	return ok(c, v, err)
}

func (s *Server) refreshConnectionMetadata(c echo.Context) error {
	v, err := s.fed.RefreshMetadata(c.Request().Context(), principal(c), c.Param("org"), c.Param("connection"))
	return ok(c, v, err)
}

func (s *Server) createApplication(c echo.Context) error {
	var in federation.ApplicationInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := s.fed.CreateApplication(c.Request().Context(), principal(c), in)
	return created(c, v, err)
}

func (s *Server) listApplications(c echo.Context) error {
	v, err := s.fed.ListApplications(c.Request().Context(), principal(c))
	return ok(c, map[string]any{"applications": v}, err)
}

func (s *Server) getApplication(c echo.Context) error {
	v, err := s.fed.GetApplication(c.Request().Context(), principal(c), c.Param("app"))
	return ok(c, v, err)
}

func (s *Server) patchApplication(c echo.Context) error {
	var in federation.ApplicationInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := s.fed.UpdateApplication(c.Request().Context(), principal(c), c.Param("app"), in)
	return ok(c, v, err)
}

func (s *Server) deleteApplication(c echo.Context) error {
	return noContent(c, s.fed.DeleteApplication(c.Request().Context(), principal(c), c.Param("app")))
}

func (s *Server) getSSOPolicy(c echo.Context) error {
	v, err := s.fed.GetPolicy(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, v, err)
}

func (s *Server) putSSOPolicy(c echo.Context) error {
	var in federation.PolicyInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := s.fed.PutPolicy(c.Request().Context(), principal(c), c.Param("org"), in)
	return ok(c, v, err)
}
