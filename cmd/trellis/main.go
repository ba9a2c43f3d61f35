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
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

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
	root.AddCommand(serveCmd(), migrateCmd(), versionCmd(), schemaCmd(), accessCmd())
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, cmd.OutOrStdout())
		},
	}
	bindServeFlags(cmd, &cfg)
	return cmd
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
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
	log := newLogger(cfg.LogLevel)
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
	eng, err := openEngine(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := eng.Close(); err != nil {
			log.Warn("engine shutdown", "err", err)
		}
	}()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var guard *engine.MemdbGuard // memdb's size, measured from after the demo on
	if counting, ok := eng.(engine.CountingEngine); ok && cfg.Datastore == "memory" && cfg.SpiceDBEndpoint == "" && cfg.MemdbWarnRelationships > 0 {
		guard = engine.NewMemdbGuard(counting, uint64(cfg.MemdbWarnRelationships), log, registry)
	}
	var graph engine.Engine = eng
	if cfg.CacheEntries > 0 {
		cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: cfg.CacheEntries, MaxBytes: cfg.CacheMaxBytes, TTL: cfg.CacheTTL, Registerer: registry, Watch: cfg.Watch})
		if err != nil {
			return err
		}
		defer cached.Close()
		graph = cached
	}
	schemas := schema.NewManager(graph)
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
	base := "http://" + ln.Addr().String()
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: base})
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	key := cfg.AdminKey
	generated := key == ""
	if generated {
		key = generateKey()
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
	if g, ok := eng.(history.Graph); ok && cfg.AccessHistory { // the changelog behind POST /v1/access/at
		rec := &history.Recorder{Graph: g, Store: st, Logger: log}
		historyCtx, stopHistory := context.WithCancel(ctx)
		historyDone := make(chan struct{})
		go func() { defer close(historyDone); rec.Run(historyCtx) }()
		defer func() { stopHistory(); <-historyDone }()
	}
	var world demoWorld
	if cfg.Demo {
		if world, err = loadDemo(ctx, dir, graph, "trellis"); err != nil {
			return err
		}
	}
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
	handler := api.New(api.Deps{
		Engine: graph, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: graph},
		Directory: dir, Tokens: signer, AdminKey: key, Logger: log, Metrics: registry,
		Warnings: warnings,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
	}
	fmt.Fprintf(out, "Trellis %s listening on %s\n", version, base)
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
