// Command trellis is the composition root: config → engine → services → api → serve.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/history"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
	"github.com/trellis-iam/trellis/store/postgres"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "trellis:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Organization-first identity and authorization for B2B SaaS",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), migrateCmd(), versionCmd(), schemaCmd(), accessCmd(), spicedbCmd())
	return root
}

// migrateCmd brings PostgreSQL schemas to the newest revision: SpiceDB's
// datastore (--database-url) and the directory store (--store-url).
func migrateCmd() *cobra.Command {
	var spicedbURL, storeURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Run PostgreSQL migrations (SpiceDB's datastore and the directory store)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if spicedbURL == "" && storeURL == "" {
				return errors.New("nothing to migrate: pass --database-url (SpiceDB) and/or --store-url (directory), or TRELLIS_DATABASE_URL / TRELLIS_STORE_URL")
			}
			return migrate(cmd.Context(), spicedbURL, storeURL, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&spicedbURL, "database-url", "", "PostgreSQL URL of SpiceDB's datastore (TRELLIS_DATABASE_URL)")
	cmd.Flags().StringVar(&storeURL, "store-url", "", "PostgreSQL URL of the directory store (TRELLIS_STORE_URL)")
	return cmd
}

func migrate(ctx context.Context, spicedbURL, storeURL string, out io.Writer) error {
	if spicedbURL != "" {
		if err := engine.MigratePostgres(ctx, spicedbURL); err != nil {
			return err
		}
		fmt.Fprintln(out, "SpiceDB datastore: migrated to head")
	}
	if storeURL != "" {
		if err := postgres.Migrate(ctx, storeURL); err != nil {
			return err
		}
		fmt.Fprintln(out, "directory store: migrated to head")
	}
	return nil
}

// openEngine starts embedded SpiceDB, or dials a SpiceDB cluster when an
// endpoint is configured; both serve the same Engine interface.
func openEngine(ctx context.Context, cfg Config) (interface {
	engine.Engine
	Close() error
}, error) {
	if cfg.SpiceDBEndpoint != "" {
		return engine.Dial(ctx, engine.RemoteConfig{Endpoint: cfg.SpiceDBEndpoint, Token: cfg.SpiceDBToken, Insecure: cfg.SpiceDBInsecure, CACert: cfg.SpiceDBCACert})
	}
	return engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Datastore: cfg.Datastore, DatastoreURI: cfg.DatabaseURL,
		RevisionQuantization: cfg.RevisionQuantization, DispatchCacheMaxCost: cfg.DispatchCache,
	})
}

// openStore opens the directory store the configuration names.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.Store != "postgres" {
		return memory.New(), nil
	}
	return postgres.Open(ctx, cfg.StoreURL)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Trellis version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "trellis", version)
		},
	}
}

func schemaCmd() *cobra.Command {
	sc := &cobra.Command{Use: "schema", Short: "Work with authorization schemas"}
	sc.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Validate an app schema (the provider's part) against the system schema",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			problems := schema.Validate(cmd.Context(), string(text))
			for _, p := range problems {
				fmt.Fprintf(cmd.OutOrStdout(), "%s:%d:%d: %s\n", args[0], p.Line, p.Column, p.Message)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%s: %d problem(s)", args[0], len(problems))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", args[0])
			return nil
		},
	})
	sc.AddCommand(schemaDiffCmd())
	return sc
}

func serveCmd() *cobra.Command {
	cfg := defaultConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Trellis server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			_, fromEnv := os.LookupEnv("TRELLIS_ACCESS_HISTORY")
			cfg.AccessHistoryExplicit = cmd.Flags().Changed("access-history") || fromEnv
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, cmd.OutOrStdout())
		},
	}
	bindServeFlags(cmd, &cfg)
	return cmd
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// tracing starts the OTLP/HTTP trace exporter when --otlp-endpoint is set
// (else no tracer: tracing is off); stop flushes it.
func tracing(ctx context.Context, cfg Config) (trace.Tracer, func(), error) {
	if cfg.OTLPEndpoint == "" {
		return nil, func() {}, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.OTLPInsecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "trellis"), attribute.String("service.version", version))))
	return tp.Tracer("github.com/trellis-iam/trellis"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}, nil
}

// decisionLog opens the decision log, or returns nil when it is off. Its
// close function runs after the HTTP server has stopped.
func decisionLog(cfg Config, reg prometheus.Registerer) (*api.DecisionLog, func(), error) {
	var w io.Writer
	var file *os.File
	switch cfg.DecisionLog {
	case "":
		return nil, func() {}, nil
	case "stdout":
		w = os.Stdout
	default:
		f, err := os.OpenFile(cfg.DecisionLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--decision-log: %w", err)
		}
		w, file = f, f
	}
	l := api.NewDecisionLog(api.DecisionLogConfig{W: w, Types: cfg.DecisionLogTypes, Sample: cfg.DecisionLogSample}, reg)
	return l, func() {
		l.Close()
		if file != nil {
			_ = file.Close()
		}
	}, nil
}

// accessLog is the JSON access log on stderr, or nil when it is off.
func accessLog(cfg Config) *slog.Logger {
	if !cfg.AccessLog {
		return nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func generateKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "trk_" + base64.RawURLEncoding.EncodeToString(b)
}

// signerFunc adapts the federation signer to the directory's TokenSigner.
func signerFunc(s *federation.Signer) directory.TokenSigner {
	return func(_ context.Context, c directory.AccessClaims) (string, time.Time, error) {
		return s.Issue(federation.AccessClaims{Subject: c.User, Organization: c.Org, Actor: c.Actor, Impersonation: c.Impersonation, TTL: c.TTL})
	}
}

// serve builds every part in order and runs until ctx ends.
func serve(ctx context.Context, cfg Config, out interface{ Write([]byte) (int, error) }) error {
	log := newLogger(cfg.LogLevel, cfg.LogFormat)
	engine.LogTo(log) // embedded SpiceDB's own logs
	if cfg.Migrate {
		spicedbURL, storeURL := "", ""
		if cfg.Datastore == "postgres" {
			spicedbURL = cfg.DatabaseURL
		}
		if cfg.Store == "postgres" {
			storeURL = cfg.StoreURL
		}
		if err := migrate(ctx, spicedbURL, storeURL, io.Discard); err != nil {
			return err
		}
	}
	if cfg.AccessHistory && cfg.Datastore == "postgres" && cfg.SpiceDBEndpoint == "" {
		if err := requireCommitTimestamps(ctx, cfg.DatabaseURL); err != nil {
			// asked for: refuse; on by default: start without it, and say so
			if cfg.AccessHistoryExplicit || !errors.Is(err, errNoCommitTimestamps) {
				return err
			}
			log.Warn("the access history (POST /v1/access/at) is off: the PostgreSQL server behind --database-url has track_commit_timestamp off; turn it on and restart to record it", "err", err)
			cfg.AccessHistory = false
		}
	}
	eng, err := openEngine(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := eng.Close(); err != nil {
			log.Warn("engine shutdown", "err", err)
		}
	}()
	// Trellis's own series; /metrics also serves the default registry's:
	// embedded SpiceDB's, Go's and the process's
	registry := prometheus.NewRegistry()
	tracer, stopTracing, err := tracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopTracing()
	var guard *engine.MemdbGuard // memdb's size, measured from after the demo on
	if counting, ok := eng.(engine.CountingEngine); ok && cfg.Datastore == "memory" && cfg.SpiceDBEndpoint == "" && cfg.MemdbWarnRelationships > 0 {
		guard = engine.NewMemdbGuard(counting, uint64(cfg.MemdbWarnRelationships), log, registry)
	}
	var graph engine.Engine = eng
	var cache *engine.Cached
	if tracer != nil {
		graph = engine.Trace(eng, tracer, "engine")
	}
	if cfg.CacheEntries > 0 {
		cached, err := engine.NewCached(ctx, graph, engine.CacheConfig{MaxEntries: cfg.CacheEntries, MaxBytes: cfg.CacheMaxBytes, TTL: cfg.CacheTTL, Registerer: registry, Watch: cfg.Watch})
		if err != nil {
			return err
		}
		defer cached.Close()
		graph, cache = cached, cached
		if tracer != nil {
			graph = engine.Trace(cached, tracer, "cache")
		}
	}
	// the store first: schema versions and signing keys live in it, shared by every node
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if tracer != nil {
		st = store.Trace(st, tracer)
	}
	schemas := schema.NewManager(graph, st)
	app := ""
	if cfg.Demo {
		app = demoAppSchema
	}
	if _, err := schemas.Bootstrap(ctx, app); err != nil {
		return fmt.Errorf("bootstrap schema: %w", err)
	}
	// reads are at least as fresh as everything stored before this start
	if w, ok := eng.(engine.Watcher); ok {
		if _, err := w.CatchUp(ctx); err != nil {
			return fmt.Errorf("engine catch-up: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	_, stopPprof, err := startPprof(cfg.PprofAddr, log)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	defer stopPprof()
	base := "http://" + ln.Addr().String()
	key := cfg.AdminKey
	generated := key == ""
	if generated {
		key = generateKey()
	}
	kek := keyEncryptionKey(cfg, key, generated, log)
	iss := issuer(cfg, ln.Addr().String(), log)
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: iss,
		RotateEvery: cfg.SigningKeyRotation, Keys: st, KeyEncryptionKey: kek})
	if err != nil {
		return err
	}
	dir, err := directory.New(directory.Deps{Store: st, Graph: graph, Signer: signerFunc(signer)},
		directory.Config{Logger: log, AuditKey: auditKey(cfg, key), MovePreviews: cfg.MovePreviews,
			MovePreviewTimeout: cfg.MovePreviewTimeout, MovePreviewMaxRelationships: cfg.MovePreviewMaxRelationships,
			AccessHistoryRetention: cfg.AccessHistoryRetention})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); dir.Relay().Run(relayCtx, 5*time.Second) }()
	defer func() { stopRelay(); <-relayDone }()
	stopNodes := followNodes(ctx, cfg, schemas, signer, log)
	defer stopNodes()
	// organizations stored by a release that did not write their lineage get it
	// before the first request (the system schema's govern reads it)
	if n, err := dir.EnsureLineage(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("wrote the organizations' lineage", "relationships", n)
	}
	if g, ok := eng.(history.Graph); ok && cfg.AccessHistory { // the changelog behind POST /v1/access/at
		rec := &history.Recorder{Graph: g, Store: st, Logger: log}
		historyCtx, stopHistory := context.WithCancel(ctx)
		historyDone := make(chan struct{})
		go func() { defer close(historyDone); rec.Run(historyCtx) }()
		defer func() { stopHistory(); <-historyDone }()
		if cfg.AccessHistoryRetention > 0 { // changes older than the retention fold into a baseline
			c := &history.Compactor{Store: st, Retention: cfg.AccessHistoryRetention, Logger: log}
			compactDone := make(chan struct{})
			go func() { defer close(compactDone); c.Run(historyCtx) }()
			defer func() { stopHistory(); <-compactDone }()
		}
	}
	var world demoWorld
	if cfg.Demo {
		if world, err = loadDemo(ctx, dir, graph, "trellis"); err != nil {
			return err
		}
	}
	stopPrewarm, warming := startPrewarm(ctx, cfg, cache, log) // after the schema, the catch-up and the demo
	defer stopPrewarm()
	var warnings func() []string
	if guard != nil {
		if err := guard.Measure(ctx); err != nil {
			return fmt.Errorf("memdb size: %w", err)
		}
		guardCtx, stopGuard := context.WithCancel(ctx)
		guardDone := make(chan struct{})
		go func() { defer close(guardDone); guard.Run(guardCtx, time.Minute) }()
		defer func() { stopGuard(); <-guardDone }()
		warnings = guard.Warnings
	}
	decisions, closeDecisions, err := decisionLog(cfg, registry)
	if err != nil {
		return err
	}
	defer closeDecisions()
	fed, err := federation.New(federation.Config{Issuer: iss, KEK: sealingKey(kek), Logger: log}, dir, st, signer)
	if err != nil {
		return err
	}
	handler := api.New(api.Deps{
		Engine: graph, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: graph},
		Directory: dir, Federation: fed, Tokens: signer, AdminKey: key, Logger: log,
		Metrics: prometheus.Gatherers{registry, prometheus.DefaultGatherer}, Registerer: registry,
		AccessLog: accessLog(cfg), AccessLogSample: cfg.AccessLogSample,
		RateLimits: api.RateLimits{Key: api.Bucket{Rate: cfg.RateLimitKey, Burst: cfg.RateLimitKeyBurst},
			Org: api.Bucket{Rate: cfg.RateLimitOrg, Burst: cfg.RateLimitOrgBurst}, Checks: cfg.RateLimitChecks},
		DecisionLog: decisions, Tracer: tracer, Warnings: warnings, Pending: warming,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
	}
	fmt.Fprintf(out, "Trellis %s listening on %s\n", version, base)
	fmt.Fprintf(out, "Admin portal: %s/portal/ (sign in with an API key or an access token)\n", base)
	if guard != nil {
		fmt.Fprintf(out, "Datastore: memdb, in memory (for the demo, tests and small data: lost at exit, slower past ~%d relationships; production: --datastore postgres)\n", cfg.MemdbWarnRelationships)
	}
	if generated {
		fmt.Fprintf(out, "Admin key (generated; set TRELLIS_ADMIN_KEY to choose one): %s\n", key)
	}
	if cfg.Demo {
		fmt.Fprint(out, "\nDemo loaded. Try:\n"+demoTour(base, key, world))
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
