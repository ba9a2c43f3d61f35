package federation

import (
	"bytes"
	"html/template"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/store"
)

// The hosted pages: email-first sign-in (branded per organization), the
// organization picker and refusals. html/template escapes every value.
var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;margin:0;background:{{.Background}};color:#222}
main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px #0003}
button{background:{{.Primary}};color:#fff;border:0;padding:.6rem 1rem;border-radius:4px;width:100%;margin-top:.5rem}
input{width:100%;padding:.5rem;box-sizing:border-box}img{max-height:48px}</style></head><body><main>
{{if .Logo}}<img src="{{.Logo}}" alt="">{{end}}{{end}}
{{define "foot"}}</main></body></html>{{end}}

{{define "message"}}{{template "head" .}}<h1>{{.Heading}}</h1><p>{{.Text}}</p><p><small>code: <code id="code">{{.Code}}</code></small></p>{{template "foot"}}{{end}}

{{define "email"}}{{template "head" .}}<h1>{{.Heading}}</h1>{{if .Text}}<p role="alert">{{.Text}}</p>{{end}}
{{if .AuthRequest}}<form method="post" action="/sso/login">
<input type="hidden" name="authRequestID" value="{{.AuthRequest}}">{{if .Org}}<input type="hidden" name="organization" value="{{.Org}}">{{end}}
<label>Work email<input type="email" name="email" value="{{.Email}}" autocomplete="username" required autofocus></label>
<button type="submit">Continue</button></form>
{{else}}<p>Open the application you want to use: it brings you back here to sign in.</p>{{end}}{{template "foot"}}{{end}}

{{define "picker"}}{{template "head" .}}<h1>Choose an organization</h1>
<form method="post" action="/sso/pick"><input type="hidden" name="authRequestID" value="{{.AuthRequest}}">
{{range .Orgs}}<button type="submit" name="organization" value="{{.ID}}">{{.Name}}</button>{{end}}</form>{{template "foot"}}{{end}}
`))

var colour = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

type pageData struct {
	Title, Heading, Text, Code string
	Primary, Background        string
	Logo                       string
	AuthRequest, Org, Email    string
	Orgs                       []store.Org
}

func brand(d *pageData, org store.Org) {
	d.Primary, d.Background = "#2f5bd3", "#f3f4f6"
	if v := org.Branding["primaryColor"]; colour.MatchString(v) {
		d.Primary = v
	}
	if v := org.Branding["backgroundColor"]; colour.MatchString(v) {
		d.Background = v
	}
	if v := org.Branding["logoUrl"]; strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://") {
		d.Logo = v
	}
}

func (s *Service) render(c echo.Context, status int, name string, d pageData) error {
	if d.Primary == "" {
		brand(&d, store.Org{})
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src https: http:; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}

// page renders a message (a refusal or an error) with its stable code.
func (s *Service) page(c echo.Context, status int, code, text string) error {
	heading := "Sign-in refused"
	if status >= 500 {
		heading = "Sign-in unavailable"
	} else if status == http.StatusBadRequest {
		heading = "Sign-in could not continue"
	}
	return s.render(c, status, "message", pageData{Title: heading, Heading: heading, Text: text, Code: code})
}

func (s *Service) emailPage(c echo.Context, authRequest string, org store.Org, msg string) error {
	d := pageData{Title: "Sign in", Heading: "Sign in", Text: msg, AuthRequest: authRequest, Org: org.Slug}
	if org.ID != "" {
		d.Heading = "Sign in to " + org.Name
		brand(&d, org)
	}
	status := http.StatusOK
	if msg != "" {
		status = http.StatusNotFound
	}
	return s.render(c, status, "email", d)
}

func (s *Service) pickerPage(c echo.Context, authRequest string, orgs []store.Org) error {
	return s.render(c, http.StatusOK, "picker", pageData{Title: "Choose an organization", AuthRequest: authRequest, Orgs: orgs})
}

// hostedLogin is GET /login/{org}: the organization's branded, email-first
// sign-in page (name, logo and colours from its branding).
func (s *Service) hostedLogin(c echo.Context) error {
	ctx := c.Request().Context()
	var org store.Org
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		org, err = orgByRef(ctx, tx, c.Param("org"))
		return err
	})
	if err != nil {
		return s.page(c, http.StatusNotFound, "unknown_organization", "There is no such organization.")
	}
	if org.Status == store.StatusSuspended {
		return s.page(c, http.StatusForbidden, "organization_suspended", "This organization is suspended: sign-in is refused.")
	}
	d := pageData{Title: "Sign in to " + org.Name, Heading: "Sign in to " + org.Name, Org: org.Slug,
		AuthRequest: c.QueryParam("authRequestID"), Email: c.QueryParam("login_hint")}
	brand(&d, org)
	return s.render(c, http.StatusOK, "email", d)
}
