package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/schema"
)

func (s *Server) mountSchema(g routes) {
	g.GET("/schema", s.getSchema)
	g.PUT("/schema", s.putSchema)
	g.POST("/schema/validate", s.validateSchema)
	g.POST("/schema/diff", s.diffSchema)
	g.GET("/schema/versions", s.schemaVersions)
	g.GET("/schema/versions/:version", s.schemaVersion)
}

func (s *Server) getSchema(c echo.Context) error {
	if err := s.schemas.Refresh(c.Request().Context()); err != nil {
		return err
	}
	v, ok := s.schemas.Current()
	if !ok {
		return trellis.ErrNotFound
	}
	return c.JSON(http.StatusOK, map[string]any{"version": v.Version, "text": v.Text, "appText": v.AppText, "appliedAt": v.AppliedAt, "appliedBy": v.AppliedBy})
}

type schemaTextJSON struct {
	Text            *string `json:"text"`
	ExpectedVersion *int    `json:"expectedVersion"`
}

// bindSchemaText decodes {text, expectedVersion?}; text is required (it may be empty).
func bindSchemaText(c echo.Context) (schemaTextJSON, string, error) {
	var in schemaTextJSON
	if err := bind(c, &in); err != nil {
		return in, "", err
	}
	if in.Text == nil {
		return in, "", trellis.Invalid("text", "is required (the app part of the schema; may be empty)")
	}
	return in, *in.Text, nil
}

func (s *Server) putSchema(c echo.Context) error {
	in, text, err := bindSchemaText(c)
	if err != nil {
		return err
	}
	if err := s.schemas.Refresh(c.Request().Context()); err != nil {
		return err
	}
	prev, _ := s.schemas.Current()
	changes, _, _ := s.schemas.Diff(c.Request().Context(), text) // for the audit event; Apply reports any error
	v, err := s.schemas.Apply(c.Request().Context(), text, in.ExpectedVersion, principal(c).Actor())
	if err != nil {
		return err
	}
	if err := s.recordProvider(c.Request().Context(), principal(c), "schema.apply", fmt.Sprintf("schema:v%d", v.Version), schemaDetails(v, prev.Version, changes)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"version": v.Version, "writtenAt": v.WrittenAt, "appliedAt": v.AppliedAt})
}

func (s *Server) validateSchema(c echo.Context) error {
	_, text, err := bindSchemaText(c)
	if err != nil {
		return err
	}
	problems := schema.Validate(c.Request().Context(), text)
	if problems == nil {
		problems = []schema.Problem{}
	}
	return c.JSON(http.StatusOK, map[string]any{"valid": len(problems) == 0, "errors": problems})
}

func (s *Server) diffSchema(c echo.Context) error {
	_, text, err := bindSchemaText(c)
	if err != nil {
		return err
	}
	if err := s.schemas.Refresh(c.Request().Context()); err != nil {
		return err
	}
	changes, impact, err := s.schemas.Diff(c.Request().Context(), text)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"changes": changes, "impact": impact})
}

func (s *Server) schemaVersions(c echo.Context) error {
	versions, err := s.schemas.Versions(c.Request().Context())
	if err != nil {
		return err
	}
	if versions == nil {
		versions = []schema.Version{}
	}
	return c.JSON(http.StatusOK, map[string]any{"versions": versions})
}

// schemaVersion is GET /v1/schema/versions/{version}: one version, with its text.
func (s *Server) schemaVersion(c echo.Context) error {
	n, err := strconv.Atoi(c.Param("version"))
	if err != nil || n < 1 {
		return trellis.Invalid("version", "must be a positive integer, got %q", c.Param("version"))
	}
	v, err := s.schemas.Version(c.Request().Context(), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"version": v.Version, "text": v.Text, "appText": v.AppText, "appliedAt": v.AppliedAt, "appliedBy": v.AppliedBy})
}
