package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-iam/trellis/engine"
)

// spicedbCmd runs SpiceDB itself, from the SpiceDB module Trellis is built
// with (go.mod pins it), so that a cluster of separate SpiceDB processes
// (`make cluster`, the cluster test) needs no second binary. `serve` is
// SpiceDB's own server package (pkg/cmd/server, the code `spicedb serve`
// runs) with the settings of the embedded server (engine.StartServer); its
// flags are named as `spicedb serve`'s and read SPICEDB_<FLAG> as it does.
// It serves plaintext gRPC and, with --http-enabled, SpiceDB's HTTP gateway
// (plaintext too): production runs the authzed/spicedb image of the same
// version (deploy/docker-compose.yaml), with TLS, metrics and dispatch.
func spicedbCmd() *cobra.Command {
	sc := &cobra.Command{
		Use:   "spicedb",
		Short: "Run SpiceDB from the pinned SpiceDB module (a cluster on loopback without a second binary)",
	}
	sc.AddCommand(spicedbServeCmd(), spicedbMigrateCmd())
	return sc
}

// spicedbServeConfig is the settings of `trellis spicedb serve`.
type spicedbServeConfig struct {
	GRPCAddr     string
	PresharedKey string
	Engine       string
	ConnURI      string
	Quantization time.Duration
	LogLevel     string
	HTTPEnabled  bool
	HTTPAddr     string
}

func (c spicedbServeConfig) server() (engine.ServerConfig, error) {
	if c.PresharedKey == "" {
		return engine.ServerConfig{}, errors.New("--grpc-preshared-key (SPICEDB_GRPC_PRESHARED_KEY) is required: clients authenticate with it")
	}
	if c.Quantization <= 0 {
		return engine.ServerConfig{}, errors.New("--datastore-revision-quantization-interval must be positive")
	}
	cfg := engine.ServerConfig{
		EmbeddedConfig: engine.EmbeddedConfig{Datastore: c.Engine, DatastoreURI: c.ConnURI, RevisionQuantization: c.Quantization},
		Addr:           c.GRPCAddr,
		PresharedKey:   c.PresharedKey,
	}
	if c.HTTPEnabled {
		if c.HTTPAddr == "" {
			return engine.ServerConfig{}, errors.New("--http-addr must name an address when --http-enabled is set")
		}
		cfg.HTTPAddr = c.HTTPAddr
	}
	if err := cfg.EmbeddedConfig.Validate(); err != nil {
		return engine.ServerConfig{}, fmt.Errorf("--datastore-engine/--datastore-conn-uri: %w", err)
	}
	return cfg, nil
}

func spicedbServeCmd() *cobra.Command {
	c := spicedbServeConfig{GRPCAddr: "127.0.0.1:50051", Engine: "memory", Quantization: 5 * time.Second, LogLevel: "info", HTTPAddr: "127.0.0.1:8443"}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve SpiceDB's gRPC API (and its HTTP gateway), plaintext, with a preshared key, on memdb or PostgreSQL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvPrefix(cmd, "SPICEDB_"); err != nil {
				return err
			}
			cfg, err := c.server()
			if err != nil {
				return err
			}
			engine.LogTo(newLogger(c.LogLevel, "text"))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := engine.StartServer(ctx, cfg)
			if err != nil {
				return err
			}
			gateway := ""
			if srv.HTTPAddr() != "" {
				gateway = " and its HTTP gateway on " + srv.HTTPAddr()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "SpiceDB %s (the module trellis %s is built with) serving gRPC on %s%s, datastore %s\n",
				spicedbVersion(), version, srv.Addr(), gateway, cfg.Datastore)
			select {
			case <-ctx.Done():
			case <-srv.Stopped():
			}
			if err := srv.Close(); err != nil {
				return fmt.Errorf("spicedb: %w", err)
			}
			if ctx.Err() == nil {
				return errors.New("spicedb: the server stopped on its own")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "address to serve gRPC on, plaintext: loopback unless told otherwise (spicedb serve's default is :50051); port 0 picks a free one (SPICEDB_GRPC_ADDR)")
	f.StringVar(&c.PresharedKey, "grpc-preshared-key", c.PresharedKey, "(required) preshared key clients must send as a bearer token (SPICEDB_GRPC_PRESHARED_KEY)")
	f.BoolVar(&c.HTTPEnabled, "http-enabled", c.HTTPEnabled, "also serve SpiceDB's HTTP gateway (its REST API, /v1/...), plaintext, same preshared key (SPICEDB_HTTP_ENABLED)")
	f.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "address of the HTTP gateway with --http-enabled: loopback unless told otherwise (spicedb serve's default is :8443); port 0 picks a free one (SPICEDB_HTTP_ADDR)")
	bindSpicedbDatastoreFlags(cmd, &c.Engine, &c.ConnURI)
	f.DurationVar(&c.Quantization, "datastore-revision-quantization-interval", c.Quantization, "how stale a minimize_latency read may be (SPICEDB_DATASTORE_REVISION_QUANTIZATION_INTERVAL)")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error; SpiceDB's own info lines show at debug (SPICEDB_LOG_LEVEL)")
	return cmd
}

// spicedbMigrateCmd is `spicedb migrate head`: SpiceDB's PostgreSQL migrations,
// as `trellis migrate --database-url` runs them.
func spicedbMigrateCmd() *cobra.Command {
	var eng, uri string
	cmd := &cobra.Command{
		Use:   "migrate head",
		Short: "Bring SpiceDB's PostgreSQL datastore to the newest revision (spicedb migrate head)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnvPrefix(cmd, "SPICEDB_"); err != nil {
				return err
			}
			if args[0] != "head" {
				return fmt.Errorf("only `migrate head` is supported, not %q", args[0])
			}
			if eng != "postgres" || uri == "" {
				return errors.New("migrate needs --datastore-engine postgres and --datastore-conn-uri (memdb has nothing to migrate)")
			}
			return migrate(cmd.Context(), uri, "", cmd.OutOrStdout())
		},
	}
	bindSpicedbDatastoreFlags(cmd, &eng, &uri)
	return cmd
}

func bindSpicedbDatastoreFlags(cmd *cobra.Command, eng, uri *string) {
	cmd.Flags().StringVar(eng, "datastore-engine", "memory", "memory or postgres (SPICEDB_DATASTORE_ENGINE)")
	cmd.Flags().StringVar(uri, "datastore-conn-uri", "", "PostgreSQL URI of the datastore (SPICEDB_DATASTORE_CONN_URI)")
}

// spicedbVersion is the SpiceDB module version this binary was built with.
func spicedbVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "github.com/authzed/spicedb" {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
