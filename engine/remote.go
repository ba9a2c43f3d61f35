package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/grpcutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/authzed/spicedb/pkg/cmd/server"
	"github.com/authzed/spicedb/pkg/cmd/util"

	"github.com/trellis-iam/trellis"
)

// RemoteConfig points Trellis at a SpiceDB cluster.
type RemoteConfig struct {
	// Endpoint is SpiceDB's gRPC address, host:port.
	Endpoint string
	// Token is SpiceDB's preshared key, sent as a bearer token.
	Token string
	// Insecure sends the token in plaintext (no TLS): loopback and development only.
	Insecure bool
	// CACert is a PEM file (or a directory of them) of the CAs that sign
	// SpiceDB's certificate; empty uses the system roots.
	CACert string
	// ConnectTimeout bounds how long Dial waits for SpiceDB to answer (default 10s).
	ConnectTimeout time.Duration
}

// Validate fills defaults and checks the configuration; field names are the
// configuration's (spicedbEndpoint, spicedbToken, spicedbCACert).
func (c *RemoteConfig) Validate() error {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.Endpoint == "" {
		return trellis.Invalid("spicedbEndpoint", "is required (host:port)")
	}
	host, port, err := net.SplitHostPort(c.Endpoint)
	if err != nil || host == "" || strings.ContainsAny(c.Endpoint, "/ ") {
		return trellis.Invalid("spicedbEndpoint", "%q is not of the form host:port", c.Endpoint)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return trellis.Invalid("spicedbEndpoint", "%q has no valid port (1 to 65535)", c.Endpoint)
	}
	if c.Token == "" {
		return trellis.Invalid("spicedbToken", "is required (SpiceDB's preshared key)")
	}
	if c.Insecure && c.CACert != "" {
		return trellis.Invalid("spicedbCACert", "cannot be used with an insecure (plaintext) connection")
	}
	return nil
}

// Remote is the Engine over a SpiceDB cluster reached with authzed-go's gRPC
// client: the same SpiceDB code as the embedded server.
type Remote struct {
	*SpiceDB
	conn *grpc.ClientConn

	closeOnce sync.Once
	closeErr  error
}

// Dial connects to SpiceDB and waits, at most cfg.ConnectTimeout, until it
// answers. A refused token fails at once.
func Dial(ctx context.Context, cfg RemoteConfig) (*Remote, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{}
	if cfg.Insecure {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpcutil.WithInsecureBearerToken(cfg.Token))
	} else {
		var tlsOpt grpc.DialOption
		var err error
		if cfg.CACert != "" {
			tlsOpt, err = grpcutil.WithCustomCerts(grpcutil.VerifyCA, cfg.CACert)
		} else {
			tlsOpt, err = grpcutil.WithSystemCerts(grpcutil.VerifyCA)
		}
		if err != nil {
			return nil, trellis.Invalid("spicedbCACert", "%v", err)
		}
		opts = append(opts, tlsOpt, grpcutil.WithBearerToken(cfg.Token))
	}
	conn, err := grpc.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("engine: spicedb at %s: %w", cfg.Endpoint, err)
	}
	r := &Remote{SpiceDB: NewSpiceDB(conn), conn: conn}
	if err := r.waitReady(ctx, cfg); err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

// waitReady asks for the schema until SpiceDB answers (no schema yet counts)
// or the timeout passes; an authentication failure ends the wait at once.
func (r *Remote) waitReady(ctx context.Context, cfg RemoteConfig) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		_, err := r.schema.ReadSchema(ctx, &v1.ReadSchemaRequest{})
		switch status.Code(err) {
		case codes.OK, codes.NotFound:
			return nil
		case codes.Unauthenticated, codes.PermissionDenied:
			return fmt.Errorf("engine: spicedb at %s refused the token: %w: %s", cfg.Endpoint, trellis.ErrUnavailable, status.Convert(err).Message())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("engine: spicedb at %s did not answer within %v: %w: %s", cfg.Endpoint, cfg.ConnectTimeout, trellis.ErrUnavailable, status.Convert(err).Message())
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// Close closes the connection. Closing twice is harmless.
func (r *Remote) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.conn.Close() })
	return r.closeErr
}

// ServerConfig configures a SpiceDB server listening on a TCP port, as a
// remote cluster for tests and development.
type ServerConfig struct {
	EmbeddedConfig
	// Addr is the address to listen on (default 127.0.0.1:0, any free port).
	Addr string
	// PresharedKey is the bearer token clients must send (required).
	PresharedKey string
	// HTTPAddr, when set, also serves SpiceDB's HTTP gateway (its REST API
	// over the gRPC one, `spicedb serve --http-enabled`) on this address,
	// plaintext; port 0 picks a free one. Empty: no gateway.
	HTTPAddr string
}

// Server is SpiceDB's own server package serving its gRPC API on a TCP port.
type Server struct {
	addr     string
	httpAddr string
	cancel   context.CancelFunc
	stopped  chan struct{} // closed when the server has stopped; runErr is then set
	runErr   error

	closeOnce sync.Once
	closeErr  error
}

// StartServer starts a SpiceDB server with the embedded server's settings
// (telemetry, metrics and dispatch listeners off; bounded caches), serving
// plaintext gRPC on cfg.Addr and, when cfg.HTTPAddr is set, SpiceDB's HTTP
// gateway on it. Close stops it.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if err := cfg.EmbeddedConfig.Validate(); err != nil {
		return nil, err
	}
	if cfg.PresharedKey == "" {
		return nil, errors.New("engine: a SpiceDB server needs a preshared key")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := resolvePort(cfg.Addr)
		if err != nil {
			return nil, err
		}
		opts := append(serverOptions(cfg.EmbeddedConfig),
			server.WithGRPCServer(util.GRPCServerConfig{Network: "tcp", Address: addr, Enabled: true}),
			server.WithPresharedSecureKey(cfg.PresharedKey),
			server.WithShutdownGracePeriod(time.Second), // then open streams (watches) are cut
		)
		httpAddr := ""
		if cfg.HTTPAddr != "" {
			// the gateway's listener opens when the server runs: a port taken
			// in between stops the server, and Close reports it
			if httpAddr, err = resolvePort(cfg.HTTPAddr); err != nil {
				return nil, err
			}
			// after serverOptions, whose gateway is off
			opts = append(opts, server.WithHTTPGateway(util.HTTPServerConfig{HTTPEnabled: true, HTTPAddress: httpAddr}))
		}
		scfg := server.NewConfigWithOptionsAndDefaults(opts...)
		runnable, err := scfg.Complete(ctx)
		if err != nil {
			// another process may have taken the free port between probe and bind
			lastErr = err
			if addr != cfg.Addr && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			break
		}
		runCtx, cancel := context.WithCancel(context.Background())
		s := &Server{addr: addr, httpAddr: httpAddr, cancel: cancel, stopped: make(chan struct{})}
		go func() { s.runErr = runnable.Run(runCtx); close(s.stopped) }()
		return s, nil
	}
	return nil, fmt.Errorf("engine: start spicedb server: %w", lastErr)
}

// resolvePort replaces port 0 with a port that is free now.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("engine: server address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("engine: find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.addr }

// HTTPAddr is the address of the HTTP gateway (host:port), "" when off.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Stopped is closed when the server has stopped, by Close or on its own (a
// failure it cannot serve through); Close then reports why.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Close stops the server; open streams are cut after a one-second grace period.
// Closing twice is harmless.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.stopped
		if s.runErr != nil && !errors.Is(s.runErr, context.Canceled) {
			s.closeErr = s.runErr
		}
	})
	return s.closeErr
}
