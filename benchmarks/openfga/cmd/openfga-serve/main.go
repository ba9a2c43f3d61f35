// Command openfga-serve runs OpenFGA as its own HTTP server process for the
// HTTP peer benchmark: OpenFGA's own `run` command (cmd/run's ServerContext,
// the code path of `openfga run`: a gRPC server with OpenFGA's interceptor
// chain, and its grpc-gateway HTTP server forwarding to it over a unix socket)
// on the memory datastore with the check query cache on, seeded with the
// benchmark's model and data (the in-process arm's fixture). It prints
//
//	ready http://127.0.0.1:18290 store=<id> model=<id>
//
// when it serves, writes OPENFGA_STORE=<id> and OPENFGA_MODEL=<id> lines to
// -ids-file if set (a shell can source it), and serves until SIGINT or SIGTERM.
// Drive it with
//
//	go run ./benchmarks/loadgen -target openfga -url http://127.0.0.1:18290 -store <id> -model <id>
//
// -datastore postgres -datastore-uri postgres://… runs it on PostgreSQL instead
// of its memory datastore, after OpenFGA's own migrations (pkg/storage/migrate,
// what `openfga migrate` runs). -tenants 0 creates the store and writes the
// model but no tuples: benchmarks/realistic seeds its own dataset through
// OpenFGA's HTTP write API.
//
// Authentication is OpenFGA's default, "none". Apart from the check query cache
// and the flags below, the configuration is OpenFGA's defaults, except that
// the Prometheus metrics server (default 0.0.0.0:2112) is off and the log level
// is warn: at OpenFGA's default, info, it logs a line per request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/openfga/cmd/run"
	"github.com/openfga/openfga/pkg/logger"
	serverconfig "github.com/openfga/openfga/pkg/server/config"
	storagemigrate "github.com/openfga/openfga/pkg/storage/migrate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	bench "github.com/trellis-iam/trellis/benchmarks/openfga"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18290", "HTTP listen address")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:18291", "gRPC listen address (the seed writes through it)")
	tenants := flag.Int("tenants", 100, "tenants (reseller -> customer -> region each)")
	users := flag.Int("users", 10, "members per region")
	idsFile := flag.String("ids-file", "", "write OPENFGA_STORE=<id> and OPENFGA_MODEL=<id> lines here once ready")
	logLevel := flag.String("log-level", "warn", "OpenFGA log level (none, debug, info, warn, error); logs go to stderr")
	datastore := flag.String("datastore", "memory", "OpenFGA datastore: memory, or postgres (with -datastore-uri; migrated at start)")
	datastoreURI := flag.String("datastore-uri", "", "PostgreSQL URL for -datastore postgres")
	flag.Parse()
	if err := migrate(*datastore, *datastoreURI); err != nil {
		fmt.Fprintln(os.Stderr, "openfga-serve: migrate:", err)
		os.Exit(1)
	}
	if err := serve(*addr, *grpcAddr, *datastore, *datastoreURI, *tenants, *users, *idsFile, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "openfga-serve:", err)
		os.Exit(1)
	}
}

// migrate brings a PostgreSQL datastore to OpenFGA's head schema; the memory
// datastore needs nothing.
func migrate(datastore, uri string) error {
	switch datastore {
	case "memory":
		return nil
	case "postgres":
		if uri == "" {
			return errors.New("-datastore postgres needs -datastore-uri")
		}
		return storagemigrate.RunMigrations(storagemigrate.MigrationConfig{Engine: "postgres", URI: uri, Timeout: time.Minute, PingTimeout: 30 * time.Second})
	default:
		return fmt.Errorf("-datastore %q: want memory or postgres", datastore)
	}
}

func serve(addr, grpcAddr, datastore, datastoreURI string, tenants, users int, idsFile, logLevel string) error {
	cfg := serverconfig.DefaultConfig()
	cfg.Datastore.Engine = datastore
	cfg.Datastore.URI = datastoreURI
	cfg.Authn.Method = "none"
	cfg.HTTP.Addr = addr
	cfg.GRPC.Addr = grpcAddr
	cfg.Metrics.Enabled = false
	cfg.Playground.Enabled = false
	cfg.CheckQueryCache.Enabled = true
	cfg.CheckQueryCache.TTL = bench.CheckCacheTTL
	cfg.CheckCache.Limit = bench.CheckCacheLimit
	cfg.Log.Level = logLevel
	if err := cfg.Verify(); err != nil {
		return err
	}
	log, err := logger.NewLogger(logger.WithFormat(cfg.Log.Format), logger.WithLevel(logLevel), logger.WithOutputPaths("stderr"))
	if err != nil {
		return err
	}

	// Run stops on SIGINT or SIGTERM (it installs its own handler), shuts down
	// gracefully and returns.
	done := make(chan error, 1)
	go func() { done <- (&run.ServerContext{Logger: log}).Run(context.Background(), cfg) }()

	// stop shuts Run down as a signal would (it removes its unix socket) and
	// returns err.
	stop := func(err error) error {
		if p, perr := os.FindProcess(os.Getpid()); perr == nil && p.Signal(os.Interrupt) == nil {
			<-done
		}
		return err
	}
	base := "http://" + addr
	if err := awaitHealthy(base+"/healthz", done); err != nil {
		if errors.Is(err, errNotHealthy) {
			return stop(err)
		}
		return err
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return stop(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	store, model, err := bench.Seed(ctx, grpcWriter{openfgav1.NewOpenFGAServiceClient(conn)}, tenants, users)
	cancel()
	conn.Close()
	if err != nil {
		return stop(fmt.Errorf("seed: %w", err))
	}
	if idsFile != "" {
		if err := writeIDs(idsFile, store, model); err != nil {
			return stop(err)
		}
	}
	fmt.Printf("ready %s store=%s model=%s\n", base, store, model)
	return <-done
}

var errNotHealthy = errors.New("not healthy after 30s")

// awaitHealthy polls the gateway's /healthz (which asks the gRPC health service)
// until it answers 200, Run returns, or 30 seconds pass (errNotHealthy).
func awaitHealthy(url string, done <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("server stopped before it was ready")
			}
			return err
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, errNotHealthy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeIDs writes the ids file whole (through a rename), so a script polling
// for it never reads it half-written.
func writeIDs(path, store, model string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".openfga-ids-*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(tmp, "OPENFGA_STORE=%s\nOPENFGA_MODEL=%s\n", store, model)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// grpcWriter is bench.Writer over OpenFGA's gRPC client.
type grpcWriter struct {
	c openfgav1.OpenFGAServiceClient
}

func (w grpcWriter) CreateStore(ctx context.Context, r *openfgav1.CreateStoreRequest) (*openfgav1.CreateStoreResponse, error) {
	return w.c.CreateStore(ctx, r)
}

func (w grpcWriter) WriteAuthorizationModel(ctx context.Context, r *openfgav1.WriteAuthorizationModelRequest) (*openfgav1.WriteAuthorizationModelResponse, error) {
	return w.c.WriteAuthorizationModel(ctx, r)
}

func (w grpcWriter) Write(ctx context.Context, r *openfgav1.WriteRequest) (*openfgav1.WriteResponse, error) {
	return w.c.Write(ctx, r)
}
