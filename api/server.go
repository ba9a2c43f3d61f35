package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
)

// maxBodyBytes bounds every request body (1 MiB).
const maxBodyBytes = 1 << 20

//go:embed openapi.json
var openAPIDocument []byte

// Deps are what the API serves.
type Deps struct {
	Engine  engine.Engine
	Checker engine.Checker // the (cached) check path; defaults to Engine
	Schemas *schema.Manager
	Actors  ActorGate
	// Directory serves organizations, users and the rest; nil leaves those routes unmounted.
	Directory *directory.Service
	// Federation serves sign-in (connections, applications, SSO and the
	// OpenID provider); nil leaves those routes unmounted. It needs Directory.
	Federation *federation.Service
	// Tokens verifies user access tokens and publishes their keys; nil accepts none.
	Tokens   TokenVerifier
	AdminKey string
	Logger   *slog.Logger
	// Warnings, when set, are conditions /readyz reports while still ready
	// (e.g. memdb past the size it serves well).
	Warnings func() []string
	// Pending, when set and non-nil, holds /readyz at 503 with its reason:
	// the node serves correctly but is not yet fit for users (e.g. its check
	// cache is still pre-warming).
	Pending func() error
	// Metrics is served at /metrics; nil serves the server's own series and
	// the default registry's (SpiceDB's, Go's and the process's).
	Metrics prometheus.Gatherer
	// Registerer receives the HTTP and check series; nil: Metrics when it is
	// a Registerer too, else a registry of the server's own.
	Registerer prometheus.Registerer
	// AccessLog, when set, logs requests (JSON lines in `trellis serve`):
	// every error, and successes with probability AccessLogSample (0 to 1).
	AccessLog       *slog.Logger
	AccessLogSample float64
	// RateLimits are the token buckets per API key and per organization
	// (429 with Retry-After); zero: none.
	RateLimits RateLimits
	Now        func() time.Time // the buckets' clock; time.Now when nil
	// DecisionLog, when set, receives every check answer (the caller closes it).
	DecisionLog *DecisionLog
	// Tracer, when set, makes every request an OpenTelemetry server span
	// (W3C traceparent honoured); nil: no tracing.
	Tracer trace.Tracer
}

// Server routes HTTP requests to Trellis's services.
type Server struct {
	engine   engine.Engine
	checker  engine.Checker
	schemas  *schema.Manager
	actors   ActorGate
	dir      *directory.Service
	fed      *federation.Service
	tokens   TokenVerifier
	adminKey [32]byte
	hasAdmin bool
	log      *slog.Logger
	warnings func() []string
	pending  func() error
	// confinement places objects for API keys bound to an organization
	confinement  *engine.Confinement
	metrics      *httpMetrics
	limits       *limiters
	decisions    *DecisionLog
	tracer       trace.Tracer
	access       *slog.Logger
	accessSample float64
}

// TokenVerifier checks user access tokens (the federation signer).
type TokenVerifier interface {
	Verify(token string) (federation.Verified, error)
	JWKS() []byte
}

// New builds the echo application.
func New(d Deps) *echo.Echo {
	s := &Server{engine: d.Engine, checker: d.Checker, schemas: d.Schemas, actors: d.Actors, dir: d.Directory, fed: d.Federation, tokens: d.Tokens, log: d.Logger, warnings: d.Warnings, pending: d.Pending}
	if s.checker == nil {
		s.checker = d.Engine
	}
	s.confinement = engine.NewConfinement(d.Engine)
	s.access, s.accessSample, s.decisions, s.tracer = d.AccessLog, d.AccessLogSample, d.DecisionLog, d.Tracer
	if d.Now == nil {
		d.Now = time.Now
	}
	s.limits = newLimiters(d.RateLimits, d.Now)
	if s.log == nil {
		s.log = slog.Default()
	}
	if d.AdminKey != "" {
		s.adminKey = sha256.Sum256([]byte(d.AdminKey))
		s.hasAdmin = true
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.log)
	own := prometheus.NewRegistry()
	metrics, reg := d.Metrics, d.Registerer
	if metrics == nil {
		metrics = prometheus.Gatherers{own, prometheus.DefaultGatherer}
	}
	if reg == nil {
		if r, ok := d.Metrics.(prometheus.Registerer); ok {
			reg = r
		} else {
			reg = own
		}
	}
	s.metrics = newHTTPMetrics(reg)
	root := routes{e: e, mw: []echo.MiddlewareFunc{s.observe, middleware.Recover()}}

	root.GET("/healthz", s.healthz)
	root.GET("/readyz", s.readyz)
	root.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	root.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
	})

	if s.tokens != nil {
		root.GET("/.well-known/jwks.json", func(c echo.Context) error {
			c.Response().Header().Set("Cache-Control", "public, max-age=300")
			return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.tokens.JWKS())
		})
	}

	s.mountPortal(root)

	v1 := root.group("/v1", s.authenticate)
	for _, path := range []string{"", "/*"} { // unknown /v1 paths: 401 before 404, as known ones
		v1.add(echo.RouteNotFound, path, echo.NotFoundHandler)
	}
	graph := v1.group("", s.providerOnly)
	s.mountAuthz(graph)
	s.mountRelationships(graph)
	s.mountSchema(graph)
	if s.dir != nil {
		s.mountAPIKeys(v1)
		s.mountDirectory(v1)
		s.mountSCIM(e, v1)
		s.mountAccess(v1)
		root.POST("/v1/invitations/:token/accept", s.acceptInvitation)
		if s.fed != nil {
			s.mountFederation(root, v1)
		}
	}
	return e
}

// routes registers handlers under a path prefix with their middleware composed
// once, when the route is added: echo's Use and Group compose it again on every
// request, which costs allocations on the check path.
type routes struct {
	e      *echo.Echo
	prefix string
	mw     []echo.MiddlewareFunc // outermost first
}

func (r routes) group(prefix string, mw ...echo.MiddlewareFunc) routes {
	return routes{e: r.e, prefix: r.prefix + prefix, mw: append(r.mw[:len(r.mw):len(r.mw)], mw...)}
}

// routeOf is the route pattern a request matched, its trailing-slash alias
// (routes.add) written as the route itself: scopes, rate limits and metrics
// see one route.
func routeOf(c echo.Context) string {
	if p := c.Path(); len(p) > 1 && strings.HasSuffix(p, "/") {
		return p[:len(p)-1]
	}
	return c.Path()
}

// add registers h, and the same path with a trailing slash (clients that
// append one reach the same handler, at no cost to the others' routing).
func (r routes) add(method, path string, h echo.HandlerFunc) {
	for i := len(r.mw) - 1; i >= 0; i-- {
		h = r.mw[i](h)
	}
	full := r.prefix + path
	r.e.Add(method, full, h)
	if method != echo.RouteNotFound && full != "" && !strings.HasSuffix(full, "/") && !strings.HasSuffix(full, "*") {
		r.e.Add(method, full+"/", h)
	}
}

func (r routes) GET(path string, h echo.HandlerFunc)    { r.add(http.MethodGet, path, h) }
func (r routes) POST(path string, h echo.HandlerFunc)   { r.add(http.MethodPost, path, h) }
func (r routes) PUT(path string, h echo.HandlerFunc)    { r.add(http.MethodPut, path, h) }
func (r routes) PATCH(path string, h echo.HandlerFunc)  { r.add(http.MethodPatch, path, h) }
func (r routes) DELETE(path string, h echo.HandlerFunc) { r.add(http.MethodDelete, path, h) }

// authenticate resolves the bearer token into a principal: the provider admin
// key (compared as SHA-256 digests in constant time), a provider API key
// (which must hold the route's scope), a service account's API key, a user
// access token signed by Trellis, or an access token of Trellis's OpenID
// provider (a signed-in user's, or a service account's by client credentials).
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, key, err := s.principalOf(c)
		if err != nil {
			return err
		}
		if key != nil {
			if err := requireScope(c, key); err != nil {
				return err
			}
		}
		if err := s.limit(c, p, key); err != nil {
			return err
		}
		m := c.Request().Method
		p.Reading = m == http.MethodGet || m == http.MethodHead // safe methods only read
		return next(&principalContext{Context: c, p: p, key: key})
	}
}

// principalContext carries the authenticated principal to the handlers in one
// allocation (echo's c.Set makes a map on every request).
type principalContext struct {
	echo.Context
	p   directory.Principal
	key *directory.KeyGrant // the provider API key used, if any
}

func (s *Server) principalOf(c echo.Context) (directory.Principal, *directory.KeyGrant, error) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return directory.Principal{}, nil, trellis.ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	if s.hasAdmin && subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) == 1 {
		return directory.Provider("admin-key"), nil, nil
	}
	ctx := c.Request().Context()
	switch {
	case s.dir == nil:
	case directory.IsProviderKey(token):
		return s.dir.AuthenticateProviderKey(ctx, token)
	case directory.IsAPIKey(token):
		p, err := s.dir.AuthenticateKey(ctx, token)
		return p, nil, err
	case s.fed != nil && strings.Count(token, ".") == 2 && federation.IsProviderAccessToken(token):
		p, err := s.fed.AuthenticateAccessToken(ctx, token) // an OpenID provider access token (ADR 0016)
		return p, nil, err
	case s.tokens != nil && strings.Count(token, ".") == 2:
		v, err := s.tokens.Verify(token)
		if err != nil {
			return directory.Principal{}, nil, err
		}
		p, err := s.dir.UserPrincipal(ctx, directory.AccessClaims{User: v.Subject, Org: v.Organization, Actor: v.Actor, Impersonation: v.Impersonation})
		return p, nil, err
	}
	return directory.Principal{}, nil, trellis.ErrUnauthenticated
}

// providerOnly guards the raw graph and schema endpoints: provider admins only.
func (s *Server) providerOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := principal(c)
		if p.Kind == directory.KindProvider {
			return next(c)
		}
		if s.dir != nil {
			ok, err := s.dir.IsProvider(c.Request().Context(), p)
			if err != nil {
				return err
			}
			if ok {
				return next(c)
			}
		}
		return fmt.Errorf("%w: the graph and schema endpoints are for provider admins", trellis.ErrForbidden)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		return err
	}
	if s.dir != nil {
		if err := s.dir.Ready(ctx); err != nil {
			return fmt.Errorf("%w: directory store: %v", trellis.ErrUnavailable, err)
		}
	}
	if s.pending != nil {
		if err := s.pending(); err != nil {
			return trellis.Unavailable("not_ready", "%v", err)
		}
	}
	body := map[string]any{"status": "ready"}
	if s.warnings != nil {
		if w := s.warnings(); len(w) > 0 {
			body["warnings"] = w
		}
	}
	return c.JSON(http.StatusOK, body)
}
