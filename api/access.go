package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
)

// mountAccess serves the access review (API.md "Access review and audit"):
// provider admins, platform auditors and customer auditors (view_audit),
// each answer confined by the directory to what the caller audits.
func (s *Server) mountAccess(g routes) {
	g.POST("/access/who-can", s.whoCan)
	g.GET("/access/users/:user", s.userAccess)
	g.POST("/access/blast-radius", s.blastRadius)
	g.POST("/access/at", s.accessAt)
}

func (s *Server) whoCan(c echo.Context) error {
	var in struct {
		Resource   string `json:"resource"`
		Permission string `json:"permission"`
		PageSize   int    `json:"pageSize"`
		Cursor     string `json:"cursor"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	res, err := resourceAndPermission(in.Resource, in.Permission)
	if err != nil {
		return err
	}
	out, err := s.dir.WhoCan(c.Request().Context(), principal(c), directory.WhoCanQuery{Resource: res, Permission: in.Permission, PageSize: in.PageSize, Cursor: in.Cursor})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// resourceAndPermission reads the two fields every access question names.
func resourceAndPermission(resource, permission string) (engine.ObjectRef, error) {
	if resource == "" {
		return engine.ObjectRef{}, trellis.Invalid("resource", "is required")
	}
	res, err := engine.ParseObjectRef("resource", resource)
	if err != nil {
		return engine.ObjectRef{}, err
	}
	return res, requiredRelation("permission", permission)
}

func (s *Server) userAccess(c echo.Context) error {
	out, err := s.dir.EffectiveAccess(c.Request().Context(), principal(c), c.Param("user"), c.QueryParam("organization"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) blastRadius(c echo.Context) error {
	var in struct {
		Updates []updateJSON `json:"updates"`
		directory.DirectoryChange
	}
	if err := bind(c, &in); err != nil {
		var v *trellis.ValidationError // a change's fields are the body's own
		if errors.As(err, &v) {
			v.Field = strings.TrimPrefix(v.Field, "DirectoryChange.")
		}
		return err
	}
	if in.Updates == nil && !in.Empty() { // a directory change, weighed as the directory would make it
		out, err := s.dir.BlastRadiusOf(c.Request().Context(), principal(c), in.DirectoryChange)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
	if !in.Empty() {
		return trellis.Invalid("updates", "give either updates or one directory change, not both")
	}
	updates, err := parseUpdates(in.Updates, true)
	if err != nil {
		return err
	}
	out, err := s.dir.BlastRadius(c.Request().Context(), principal(c), updates)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) accessAt(c echo.Context) error {
	var in struct {
		Resource   string `json:"resource"`
		Permission string `json:"permission"`
		Subject    string `json:"subject"`
		At         string `json:"at"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	res, err := resourceAndPermission(in.Resource, in.Permission)
	if err != nil {
		return err
	}
	q := directory.AccessAtQuery{Resource: res, Permission: in.Permission}
	if in.Subject != "" {
		sub, err := engine.ParseSubjectRef("subject", in.Subject)
		if err != nil {
			return err
		}
		q.Subject = &sub
	}
	if in.At == "" {
		return trellis.Invalid("at", "is required (RFC 3339)")
	}
	if q.At, err = time.Parse(time.RFC3339Nano, in.At); err != nil {
		return trellis.Invalid("at", "must be an RFC 3339 time, got %q", in.At)
	}
	out, err := s.dir.AccessAt(c.Request().Context(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
