// Command trellis is the composition root: config → engine → services → api → serve.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/memory"
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
	root.AddCommand(serveCmd(), versionCmd(), schemaCmd())
	return root
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
	return func(_ context.Context, user, org string, ttl time.Duration) (string, time.Time, error) {
		return s.Issue(federation.AccessClaims{Subject: user, Organization: org, TTL: ttl})
	}
}

// serve builds every part in order and runs until ctx ends.
func serve(ctx context.Context, cfg Config, out interface{ Write([]byte) (int, error) }) error {
	log := newLogger(cfg.LogLevel)
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Datastore: cfg.Datastore, DatastoreURI: cfg.DatabaseURL,
		RevisionQuantization: cfg.RevisionQuantization, DispatchCacheMaxCost: cfg.DispatchCache,
	})
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
	var graph engine.Engine = eng
	if cfg.CacheEntries > 0 {
		cached, err := engine.NewCached(ctx, eng, engine.CacheConfig{MaxEntries: cfg.CacheEntries, MaxBytes: cfg.CacheMaxBytes, TTL: cfg.CacheTTL, Registerer: registry})
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
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	signer, err := federation.NewSigner(federation.SignerConfig{Issuer: base})
	if err != nil {
		return err
	}
	st := memory.New()
	defer st.Close()
	dir, err := directory.New(directory.Deps{Store: st, Graph: graph, Signer: signerFunc(signer)}, directory.Config{Logger: log})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); dir.Relay().Run(relayCtx, 5*time.Second) }()
	defer func() { stopRelay(); <-relayDone }()
	var world demoWorld
	if cfg.Demo {
		if world, err = loadDemo(ctx, dir, graph, "trellis"); err != nil {
			return err
		}
	}
	key := cfg.AdminKey
	generated := key == ""
	if generated {
		key = generateKey()
	}
	handler := api.New(api.Deps{
		Engine: graph, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: graph},
		Directory: dir, Tokens: signer, AdminKey: key, Logger: log, Metrics: registry,
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "Trellis %s listening on %s\n", version, base)
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
