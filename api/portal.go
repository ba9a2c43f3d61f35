package api

import (
	"embed"
	"net/http"
	"path"

	"github.com/labstack/echo/v4"
)

// portalFiles is the admin portal: one static page and its script and
// styles. It holds no authority of its own: it calls /v1 with the token the
// user pastes, so it has the API's authorization exactly.
//
//go:embed portal/index.html portal/portal.js portal/portal.css
var portalFiles embed.FS

var portalTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

// mountPortal serves /portal/ (the page) and its two assets; anything else
// under /portal/ is a 404.
func (s *Server) mountPortal(root routes) {
	root.e.GET("/portal", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/portal/") })
	serve := func(name string) echo.HandlerFunc {
		body, err := portalFiles.ReadFile("portal/" + name)
		if err != nil {
			panic("api: portal asset " + name + " is not embedded")
		}
		return func(c echo.Context) error {
			h := c.Response().Header()
			// scripts and styles from this origin only, no framing, no inline code
			h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, portalTypes[path.Ext(name)], body)
		}
	}
	root.e.GET("/portal/", serve("index.html"))
	root.e.GET("/portal/portal.js", serve("portal.js"))
	root.e.GET("/portal/portal.css", serve("portal.css"))
}
