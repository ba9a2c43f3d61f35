package api

import (
	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/scim"
)

// mountSCIM serves the SCIM administration endpoints under /v1 and the SCIM
// 2.0 service provider itself at /scim/v2/{org} (its own authentication: the
// organization's SCIM token; its own error schema).
func (s *Server) mountSCIM(e *echo.Echo, g routes) {
	g.POST("/organizations/:org/scim/tokens", s.createSCIMToken)
	g.GET("/organizations/:org/scim/tokens", s.listSCIMTokens)
	g.DELETE("/organizations/:org/scim/tokens/:token", s.revokeSCIMToken)
	g.GET("/organizations/:org/scim/mappings", s.getSCIMMappings)
	g.PUT("/organizations/:org/scim/mappings", s.putSCIMMappings)
	g.GET("/organizations/:org/scim/status", s.scimStatus)
	g.POST("/organizations/:org/scim/repair", s.repairSCIM)
	scim.New(s.dir, s.log).Mount(e)
}

func (s *Server) createSCIMToken(c echo.Context) error {
	var in directory.CreateSCIMToken
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	t, err := s.dir.CreateSCIMToken(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, t, err)
}

func (s *Server) listSCIMTokens(c echo.Context) error {
	ts, err := s.dir.ListSCIMTokens(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"tokens": ts}, err)
}

func (s *Server) revokeSCIMToken(c echo.Context) error {
	return noContent(c, s.dir.RevokeSCIMToken(c.Request().Context(), principal(c), c.Param("org"), c.Param("token")))
}

func (s *Server) getSCIMMappings(c echo.Context) error {
	m, err := s.dir.GetSCIMMappings(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, m, err)
}

func (s *Server) putSCIMMappings(c echo.Context) error {
	var in directory.SCIMMappings
	if err := bind(c, &in); err != nil {
		return err
	}
	m, err := s.dir.PutSCIMMappings(c.Request().Context(), principal(c), c.Param("org"), in)
	return ok(c, m, err)
}

func (s *Server) scimStatus(c echo.Context) error {
	st, err := s.dir.GetSCIMStatus(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, st, err)
}

func (s *Server) repairSCIM(c echo.Context) error {
	var in directory.SCIMRepair
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	r, err := s.dir.RepairSCIM(c.Request().Context(), principal(c), c.Param("org"), in)
	return ok(c, r, err)
}
