package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dscfg "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/cmd/server"
	"github.com/authzed/spicedb/pkg/cmd/util"
)

// EmbeddedConfig configures SpiceDB running inside the Trellis process.
type EmbeddedConfig struct {
	// Datastore is "memory" (default) or "postgres".
	Datastore string
	// DatastoreURI is the PostgreSQL URI when Datastore is "postgres".
	DatastoreURI string
	// RevisionQuantization bounds how stale a minimizeLatency read may be.
	RevisionQuantization time.Duration
	// DispatchCacheMaxCost caps SpiceDB's own dispatch cache (e.g. "64MiB").
	DispatchCacheMaxCost string
}

// Validate fills defaults and checks the configuration.
func (c *EmbeddedConfig) Validate() error {
	if c.Datastore == "" {
		c.Datastore = "memory"
	}
	if c.RevisionQuantization == 0 {
		c.RevisionQuantization = time.Second
	}
	if c.DispatchCacheMaxCost == "" {
		c.DispatchCacheMaxCost = "64MiB"
	}
	switch c.Datastore {
	case "memory":
	case "postgres":
		if c.DatastoreURI == "" {
			return errors.New("engine: the postgres datastore needs a database URI")
		}
	default:
		return fmt.Errorf("engine: unknown datastore %q (memory or postgres)", c.Datastore)
	}
	return nil
}

// Embedded is a SpiceDB server running in this process, reached over an
// in-memory gRPC connection.
type Embedded struct {
	*SpiceDB
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error

	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts SpiceDB in process. Close stops it.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scfg := server.NewConfigWithOptionsAndDefaults(append(serverOptions(cfg),
		server.WithGRPCServer(util.GRPCServerConfig{Network: util.BufferedNetwork, Enabled: true}),
		server.WithGRPCAuthFunc(func(ctx context.Context) (context.Context, error) { return ctx, nil }),
	)...)
	runnable, err := scfg.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: configure embedded spicedb: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runnable.Run(runCtx) }()

	conn, err := runnable.NewClient(grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-done
		return nil, fmt.Errorf("engine: connect to embedded spicedb: %w", err)
	}
	return &Embedded{SpiceDB: NewSpiceDB(conn), conn: conn, cancel: cancel, done: done}, nil
}

// serverOptions are the SpiceDB server settings shared by the embedded server
// and StartServer: the datastore, nothing else listening or phoning home, and
// bounded caches. The caller adds the gRPC server and its authentication.
func serverOptions(cfg EmbeddedConfig) []server.ConfigOption {
	ds := dscfg.NewConfigWithOptionsAndDefaults(
		dscfg.WithEngine(cfg.Datastore),
		dscfg.WithURI(cfg.DatastoreURI),
		dscfg.WithRevisionQuantization(cfg.RevisionQuantization),
		dscfg.WithGCWindow(24*time.Hour),
	)
	cache := server.CacheConfig{Name: "dispatch", Enabled: true, MaxCost: cfg.DispatchCacheMaxCost}
	nsCache := server.CacheConfig{Name: "namespace", Enabled: true, MaxCost: "16MiB"}
	return []server.ConfigOption{
		server.WithDatastoreConfig(*ds),
		server.WithHTTPGateway(util.HTTPServerConfig{HTTPEnabled: false}),
		server.WithMetricsAPI(util.HTTPServerConfig{HTTPEnabled: false}),
		server.WithDispatchServer(util.GRPCServerConfig{Enabled: false}),
		server.WithSilentlyDisableTelemetry(true),
		server.WithTelemetryEndpoint(""),
		server.WithDispatchCacheConfig(cache),
		server.WithClusterDispatchCacheConfig(server.CacheConfig{Name: "cluster_dispatch", Enabled: false}),
		server.WithNamespaceCacheConfig(nsCache),
		server.WithEnableRelationshipExpiration(true),
		server.WithMaximumUpdatesPerWrite(MaxAtomicUpdates), // one outbox entry, one write
		server.WithEnableMemoryProtectionMiddleware(false),
	}
}

// Close stops the embedded server: client first, then the server (which closes
// the datastore it created).
// Closing twice is harmless.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		cerr := e.conn.Close()
		e.cancel()
		if rerr := <-e.done; rerr != nil && !errors.Is(rerr, context.Canceled) {
			e.closeErr = rerr
			return
		}
		e.closeErr = cerr
	})
	return e.closeErr
}
