package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// maxBodyBytes bounds every request body (1 MiB).
const maxBodyBytes = 1 << 20

//go:embed openapi.json
var openAPIDocument []byte

// Deps are what the API serves.
type Deps struct {
	Engine   engine.Engine
	Checker  engine.Checker // the (cached) check path; defaults to Engine
	Schemas  *schema.Manager
	Actors   ActorGate
	AdminKey string
	Logger   *slog.Logger
	Metrics  prometheus.Gatherer // served at /metrics; nil serves an empty registry
}

// Server routes HTTP requests to Trellis's services.
type Server struct {
	engine   engine.Engine
	checker  engine.Checker
	schemas  *schema.Manager
	actors   ActorGate
	adminKey [32]byte
	hasAdmin bool
	log      *slog.Logger
}

// Caller is the authenticated principal of a request.
type Caller struct {
	Kind string // "provider_admin"
	Name string
}

func callerOf(c echo.Context) Caller {
	v, _ := c.Get("caller").(Caller)
	return v
}

// New builds the echo application.
func New(d Deps) *echo.Echo {
	s := &Server{engine: d.Engine, checker: d.Checker, schemas: d.Schemas, actors: d.Actors, log: d.Logger}
	if s.checker == nil {
		s.checker = d.Engine
	}
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
	e.Use(middleware.Recover())
	e.Use(limitBody)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	metrics := d.Metrics
	if metrics == nil {
		metrics = prometheus.NewRegistry()
	}
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
	})

	v1 := e.Group("/v1", s.authenticate)
	s.mountAuthz(v1)
	s.mountRelationships(v1)
	s.mountSchema(v1)
	return e
}

func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body != nil {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, maxBodyBytes)
		}
		return next(c)
	}
}

// authenticate accepts the provider admin key as a bearer token. Keys are
// compared as SHA-256 digests in constant time.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return trellis.ErrUnauthenticated
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !s.hasAdmin || subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) != 1 {
			return trellis.ErrUnauthenticated
		}
		c.Set("caller", Caller{Kind: "provider_admin", Name: "provider-admin-key"})
		return next(c)
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
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
