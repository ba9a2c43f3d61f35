package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dscfg "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/cmd/server"
	"github.com/authzed/spicedb/pkg/cmd/util"
	"github.com/authzed/spicedb/pkg/datastore"
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
	// memdb is the in-memory datastore when Trellis made it (Datastore
	// "memory"): the server does not close a datastore it was handed, Close does.
	memdb datastore.Datastore

	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts SpiceDB in process. Close stops it.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := append(serverOptions(cfg),
		server.WithGRPCServer(util.GRPCServerConfig{Network: util.BufferedNetwork, Enabled: true}),
		server.WithGRPCAuthFunc(func(ctx context.Context) (context.Context, error) { return ctx, nil }),
	)
	var memdb datastore.Datastore
	if cfg.Datastore == "memory" {
		// made here rather than by the server so that its size can be read
		// (RelationshipCount); the options are those the server would pass
		ds, err := dscfg.NewDatastore(ctx, datastoreConfig(cfg).ToOption(), dscfg.WithFilterMaximumIDCount(dispatchChunkSize))
		if err != nil {
			return nil, fmt.Errorf("engine: create memdb datastore: %w", err)
		}
		memdb = ds
		opts = append(opts, server.WithDatastore(ds), server.WithDispatchChunkSize(dispatchChunkSize))
	}
	scfg := server.NewConfigWithOptionsAndDefaults(opts...)
	runnable, err := scfg.Complete(ctx)
	if err != nil {
		if memdb != nil {
			_ = memdb.Close()
		}
		return nil, fmt.Errorf("engine: configure embedded spicedb: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runnable.Run(runCtx) }()

	conn, err := runnable.NewClient(grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-done
		if memdb != nil {
			_ = memdb.Close()
		}
		return nil, fmt.Errorf("engine: connect to embedded spicedb: %w", err)
	}
	return &Embedded{SpiceDB: NewSpiceDB(conn), conn: conn, cancel: cancel, done: done, memdb: memdb}, nil
}

// serverOptions are the SpiceDB server settings shared by the embedded server
// and StartServer: the datastore, nothing else listening or phoning home, and
// bounded caches. The caller adds the gRPC server and its authentication.
func serverOptions(cfg EmbeddedConfig) []server.ConfigOption {
	ds := datastoreConfig(cfg)
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

// dispatchChunkSize is SpiceDB's default, named because a datastore made by
// Trellis is told it as the server would tell its own.
const dispatchChunkSize = 100

func datastoreConfig(cfg EmbeddedConfig) *dscfg.Config {
	return dscfg.NewConfigWithOptionsAndDefaults(
		dscfg.WithEngine(cfg.Datastore),
		dscfg.WithURI(withStatementCache(cfg.Datastore, cfg.DatastoreURI)),
		dscfg.WithRevisionQuantization(cfg.RevisionQuantization),
		dscfg.WithGCWindow(24*time.Hour),
	)
}

// withStatementCache asks pgx to prepare each of SpiceDB's query shapes once per
// connection (default_query_exec_mode=cache_statement) unless the URI chooses a
// mode itself. SpiceDB's own default, exec, has PostgreSQL parse and plan every
// query: at 176,000 relationships that planning was four fifths of PostgreSQL's
// CPU per check (ADR 0019). A URI that names a mode keeps it, e.g. exec behind a
// PgBouncer in transaction mode without prepared-statement support.
func withStatementCache(datastore, uri string) string {
	if datastore != "postgres" || uri == "" || strings.Contains(uri, "default_query_exec_mode") {
		return uri
	}
	const param = "default_query_exec_mode=cache_statement"
	if strings.HasPrefix(uri, "postgres://") || strings.HasPrefix(uri, "postgresql://") {
		if strings.Contains(uri, "?") {
			return uri + "&" + param
		}
		return uri + "?" + param
	}
	return uri + " " + param // keyword/value form
}

// RelationshipCount is how many relationships the in-memory datastore holds
// (ErrUnsupported on any other datastore: count those with their own tools).
// It walks memdb's table under its read lock, a few milliseconds per 100,000.
func (e *Embedded) RelationshipCount(ctx context.Context) (uint64, error) {
	if e.memdb == nil {
		return 0, errors.ErrUnsupported
	}
	st, err := e.memdb.Statistics(ctx)
	if err != nil {
		return 0, fmt.Errorf("engine: memdb statistics: %w", err)
	}
	return st.EstimatedRelationshipCount, nil
}

// Close stops the embedded server: client first, then the server (which closes
// the datastore it created), then the memdb datastore Trellis created.
// Closing twice is harmless.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		cerr := e.conn.Close()
		e.cancel()
		rerr := <-e.done
		if e.memdb != nil {
			if err := e.memdb.Close(); err != nil && cerr == nil {
				cerr = err
			}
		}
		if rerr != nil && !errors.Is(rerr, context.Canceled) {
			e.closeErr = rerr
			return
		}
		e.closeErr = cerr
	})
	return e.closeErr
}
