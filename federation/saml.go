package federation

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/store"
)

// samlRedirect starts a SAML sign-in.
func (s *Service) samlRedirect(c echo.Context, conn store.Connection, org, _, _ string) error {
	s.refused(c.Request().Context(), conn, org, "saml_unsupported")
	return s.page(c, http.StatusNotImplemented, "saml_unsupported", "SAML sign-in is not available yet.")
}
