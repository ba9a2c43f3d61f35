package main

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
)

// Config is every setting of `trellis serve`. Flags and TRELLIS_* environment
// variables fill it here and nowhere else; a flag set on the command line wins.
type Config struct {
	Addr                 string
	PprofAddr            string // Go's profiling endpoints (net/http/pprof) on their own listener; off when empty
	Datastore            string
	DatabaseURL          string
	SpiceDBEndpoint      string
	SpiceDBToken         string
	SpiceDBInsecure      bool
	SpiceDBCACert        string
	Watch                bool
	Store                string
	StoreURL             string
	Migrate              bool
	AdminKey             string
	AuditKey             string
	Demo                 bool
	LogLevel             string
	RevisionQuantization time.Duration
	DispatchCache        string
	CacheEntries         int
	CacheMaxBytes        int64
	CacheTTL             time.Duration
	// CacheWarmFile keeps the check cache's questions (never its answers)
	// across restarts: saved every CacheWarmInterval and at shutdown, asked
	// again in the background at start (at most CacheWarmKeys of them).
	CacheWarmFile     string
	CacheWarmKeys     int
	CacheWarmInterval time.Duration
	// CacheWarmInFlight bounds the pre-warm's bulk calls in flight at once.
	CacheWarmInFlight int
	// CacheWarmReady, when positive, holds /readyz at 503 while the pre-warm
	// runs, for at most this long, so a load balancer sends users to a node
	// once its cache is warm; 0 reports ready at once (pre-warm in background).
	CacheWarmReady time.Duration
	// HTTP server timeouts: a client that sends its headers or body too
	// slowly, or holds an idle connection, is cut off (a slow body cannot
	// hold a connection and a goroutine for ever).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// Move previews (and moves, which compute the same impact): how many at
	// once in this process, how long each may take, how many relationships
	// each may load; zero values take the directory's defaults.
	MovePreviews                int
	MovePreviewTimeout          time.Duration
	MovePreviewMaxRelationships int
	// MemdbWarnRelationships: past this many relationships in the in-memory
	// datastore, serve logs a warning and /readyz reports it.
	MemdbWarnRelationships int
	// Observability (ADR 0014): the log format, the JSON access log and
	// the fraction of successful requests it samples (errors always).
	LogFormat       string
	AccessLog       bool
	AccessLogSample float64
	// Rate limits (token buckets; 0 = none): per API key, per organization,
	// and whether an app's checks through a key count too.
	RateLimitKey      float64
	RateLimitKeyBurst int
	RateLimitOrg      float64
	RateLimitOrgBurst int
	RateLimitChecks   bool
	// Decision log: "" (off), "stdout" or a file path; the resource types it
	// keeps (empty: all) and the fraction it samples.
	DecisionLog       string
	DecisionLogTypes  []string
	DecisionLogSample float64
	// OTLPEndpoint, when set, exports traces over OTLP/HTTP (host:port);
	// OTLPInsecure sends them in plaintext.
	OTLPEndpoint string
	OTLPInsecure bool
	// Several nodes (nodes.go): the public issuer URL of tokens, the
	// key-encryption key of stored signing keys, how often they rotate, how
	// often a node looks for another node's schema change.
	Issuer               string
	KeyEncryptionKey     string
	KeyEncryptionKeyFile string
	SigningKeyRotation   time.Duration
	SchemaPoll           time.Duration
	// AccessHistory records the relationship changelog (POST /v1/access/at);
	// AccessHistoryRetention is how far back it answers (0 = all of it).
	AccessHistory bool
	// AccessHistoryExplicit: --access-history (or its variable) was given,
	// so a PostgreSQL server without commit timestamps refuses the start
	// rather than starting without the history.
	AccessHistoryExplicit  bool
	AccessHistoryRetention time.Duration
}

func defaultConfig() Config {
	return Config{
		Addr:                   "127.0.0.1:8080",
		Datastore:              "memory",
		Store:                  "memory",
		LogLevel:               "info",
		RevisionQuantization:   time.Second,
		DispatchCache:          "64MiB",
		CacheEntries:           1_000_000,
		CacheMaxBytes:          256 << 20,
		CacheTTL:               10 * time.Minute,
		CacheWarmKeys:          100_000,
		CacheWarmInterval:      5 * time.Minute,
		CacheWarmInFlight:      4,
		ReadHeaderTimeout:      10 * time.Second,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           60 * time.Second,
		IdleTimeout:            120 * time.Second,
		LogFormat:              "text",
		AccessLogSample:        1,
		DecisionLogSample:      1,
		MemdbWarnRelationships: engine.DefaultMemdbWarnRelationships,
		SigningKeyRotation:     24 * time.Hour,
		SchemaPoll:             2 * time.Second,
		AccessHistory:          true,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("--addr is required"))
	}
	switch c.Datastore {
	case "memory":
	case "postgres":
		if c.DatabaseURL == "" {
			errs = append(errs, errors.New("--datastore postgres needs --database-url (TRELLIS_DATABASE_URL)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--datastore must be memory or postgres, not %q", c.Datastore))
	}
	if c.SpiceDBEndpoint != "" {
		if c.SpiceDBToken == "" {
			errs = append(errs, errors.New("--spicedb-endpoint needs --spicedb-token (TRELLIS_SPICEDB_TOKEN)"))
		}
		c.Watch = true // several nodes share the cluster: each follows its Watch stream
	}
	switch c.Store {
	case "memory":
	case "postgres":
		if c.StoreURL == "" {
			c.StoreURL = c.DatabaseURL
		}
		if c.StoreURL == "" {
			errs = append(errs, errors.New("--store postgres needs --store-url (TRELLIS_STORE_URL) or --database-url"))
		}
	default:
		errs = append(errs, fmt.Errorf("--store must be memory or postgres, not %q", c.Store))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat))
	}
	for _, r := range []struct {
		flag  string
		rate  float64
		burst int
	}{{"--rate-limit-key", c.RateLimitKey, c.RateLimitKeyBurst}, {"--rate-limit-org", c.RateLimitOrg, c.RateLimitOrgBurst}} {
		if r.rate < 0 || r.burst < 0 || r.rate > 0 && r.burst == 0 {
			errs = append(errs, fmt.Errorf("%s must be 0 (off) or positive, with a positive %s-burst", r.flag, r.flag))
		}
	}
	if c.DecisionLogSample <= 0 || c.DecisionLogSample > 1 {
		errs = append(errs, errors.New("--decision-log-sample must be above 0 and at most 1"))
	}
	if c.AccessLogSample < 0 || c.AccessLogSample > 1 {
		errs = append(errs, errors.New("--access-log-sample must be between 0 and 1"))
	}
	if c.RevisionQuantization <= 0 {
		errs = append(errs, errors.New("--revision-quantization must be positive"))
	}
	if c.CacheEntries < 0 {
		errs = append(errs, errors.New("--cache-entries must be 0 (cache off) or positive"))
	}
	if c.CacheMaxBytes <= 0 {
		errs = append(errs, errors.New("--cache-max-bytes must be positive"))
	}
	if c.CacheTTL <= 0 {
		errs = append(errs, errors.New("--cache-ttl must be positive"))
	}
	if c.CacheWarmKeys < 0 {
		errs = append(errs, errors.New("--cache-warm-keys must be 0 or positive"))
	}
	if c.CacheWarmInterval <= 0 {
		errs = append(errs, errors.New("--cache-warm-interval must be positive"))
	}
	if c.CacheWarmInFlight <= 0 {
		errs = append(errs, errors.New("--cache-warm-in-flight must be positive"))
	}
	if c.CacheWarmReady < 0 {
		errs = append(errs, errors.New("--cache-warm-ready must be 0 (ready at once) or positive"))
	}
	if c.MemdbWarnRelationships < 0 {
		errs = append(errs, errors.New("--memdb-warn-relationships must be 0 (never warn) or positive"))
	}
	if c.AuditKey != "" && len(c.AuditKey) < 16 {
		errs = append(errs, errors.New("--audit-key must be at least 16 characters (32 random bytes, e.g. openssl rand -hex 32, recommended)"))
	}
	if c.Store == "postgres" && c.AuditKey == "" && c.AdminKey == "" {
		errs = append(errs, errors.New("--store postgres needs --audit-key (TRELLIS_AUDIT_KEY) or --admin-key (TRELLIS_ADMIN_KEY): the audit chains' checkpoints are signed with a key that must survive restarts, and a generated admin key does not"))
	}
	errs = append(errs, c.validateNodes()...)
	for _, t := range []struct {
		flag string
		d    time.Duration
	}{{"--read-header-timeout", c.ReadHeaderTimeout}, {"--read-timeout", c.ReadTimeout}, {"--write-timeout", c.WriteTimeout}, {"--idle-timeout", c.IdleTimeout}} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive (a connection without a deadline can be held open for ever)", t.flag))
		}
	}
	return errors.Join(errs...)
}

func bindServeFlags(cmd *cobra.Command, c *Config) {
	f := cmd.Flags()
	f.StringVar(&c.Addr, "addr", c.Addr, "listen address (TRELLIS_ADDR)")
	f.StringVar(&c.PprofAddr, "pprof-addr", c.PprofAddr, "serve Go's profiling endpoints (/debug/pprof/) on this separate address, unauthenticated: keep it on loopback; off when empty (TRELLIS_PPROF_ADDR)")
	f.StringVar(&c.Datastore, "datastore", c.Datastore, "SpiceDB datastore: memory or postgres (TRELLIS_DATASTORE)")
	f.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "PostgreSQL URL for --datastore postgres (TRELLIS_DATABASE_URL)")
	f.StringVar(&c.SpiceDBEndpoint, "spicedb-endpoint", c.SpiceDBEndpoint, "host:port of a SpiceDB cluster to use instead of the embedded one (TRELLIS_SPICEDB_ENDPOINT)")
	f.StringVar(&c.SpiceDBToken, "spicedb-token", c.SpiceDBToken, "preshared key of that cluster (TRELLIS_SPICEDB_TOKEN)")
	f.BoolVar(&c.SpiceDBInsecure, "spicedb-insecure", c.SpiceDBInsecure, "plaintext gRPC to the cluster (loopback and development only) (TRELLIS_SPICEDB_INSECURE)")
	f.StringVar(&c.SpiceDBCACert, "spicedb-ca-cert", c.SpiceDBCACert, "PEM CA certificate of the cluster's TLS (TRELLIS_SPICEDB_CA_CERT)")
	f.BoolVar(&c.Watch, "watch", c.Watch, "follow SpiceDB's Watch stream to invalidate the check cache (on with --spicedb-endpoint) (TRELLIS_WATCH)")
	f.StringVar(&c.Store, "store", c.Store, "directory and audit store: memory or postgres (TRELLIS_STORE)")
	f.StringVar(&c.StoreURL, "store-url", c.StoreURL, "PostgreSQL URL of the directory store; defaults to --database-url (TRELLIS_STORE_URL)")
	f.BoolVar(&c.Migrate, "migrate", c.Migrate, "run the directory's and SpiceDB's PostgreSQL migrations at start (TRELLIS_MIGRATE)")
	f.StringVar(&c.AdminKey, "admin-key", c.AdminKey, "provider admin API key; generated and printed when empty (TRELLIS_ADMIN_KEY)")
	f.StringVar(&c.AuditKey, "audit-key", c.AuditKey, "secret the audit chains' checkpoints are signed with; derived from --admin-key when empty (TRELLIS_AUDIT_KEY)")
	f.BoolVar(&c.Demo, "demo", c.Demo, "load the demo organizations, users and app schema (TRELLIS_DEMO)")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (TRELLIS_LOG_LEVEL)")
	f.DurationVar(&c.RevisionQuantization, "revision-quantization", c.RevisionQuantization, "how stale a minimizeLatency read may be (TRELLIS_REVISION_QUANTIZATION)")
	f.IntVar(&c.CacheEntries, "cache-entries", c.CacheEntries, "check cache size in entries; 0 turns the cache off (TRELLIS_CACHE_ENTRIES)")
	f.Int64Var(&c.CacheMaxBytes, "cache-max-bytes", c.CacheMaxBytes, "check cache memory bound in bytes (approximate) (TRELLIS_CACHE_MAX_BYTES)")
	f.DurationVar(&c.CacheTTL, "cache-ttl", c.CacheTTL, "longest a cached answer is served, a safety net behind epochs (TRELLIS_CACHE_TTL)")
	f.StringVar(&c.CacheWarmFile, "cache-warm-file", c.CacheWarmFile, "file keeping the check cache's hot questions (not answers) across restarts: asked again in the background at start; off when empty (TRELLIS_CACHE_WARM_FILE)")
	f.IntVar(&c.CacheWarmKeys, "cache-warm-keys", c.CacheWarmKeys, "most questions --cache-warm-file keeps (TRELLIS_CACHE_WARM_KEYS)")
	f.DurationVar(&c.CacheWarmInterval, "cache-warm-interval", c.CacheWarmInterval, "how often --cache-warm-file is saved (also at shutdown) (TRELLIS_CACHE_WARM_INTERVAL)")
	f.IntVar(&c.CacheWarmInFlight, "cache-warm-in-flight", c.CacheWarmInFlight, "bulk calls of 100 questions the pre-warm keeps in flight at once (TRELLIS_CACHE_WARM_IN_FLIGHT)")
	f.DurationVar(&c.CacheWarmReady, "cache-warm-ready", c.CacheWarmReady, "with --cache-warm-file: /readyz answers 503 while the pre-warm runs, at most this long (a load balancer keeps users on warm nodes); 0 = ready at once (TRELLIS_CACHE_WARM_READY)")
	f.StringVar(&c.DispatchCache, "dispatch-cache", c.DispatchCache, "SpiceDB dispatch cache size, e.g. 64MiB (TRELLIS_DISPATCH_CACHE)")
	f.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "longest a client may take to send a request's headers (TRELLIS_READ_HEADER_TIMEOUT)")
	f.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "longest a client may take to send a whole request, headers and body (TRELLIS_READ_TIMEOUT)")
	f.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "longest from the end of a request's headers to the end of its response (TRELLIS_WRITE_TIMEOUT)")
	f.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "longest a keep-alive connection may wait for its next request (TRELLIS_IDLE_TIMEOUT)")
	f.IntVar(&c.MovePreviews, "move-previews", c.MovePreviews, "organization moves and previews computed at once; 0 = the default, 2 (TRELLIS_MOVE_PREVIEWS)")
	f.DurationVar(&c.MovePreviewTimeout, "move-preview-timeout", c.MovePreviewTimeout, "longest a move's impact may take to compute (503 past it); 0 = the default, 10s (TRELLIS_MOVE_PREVIEW_TIMEOUT)")
	f.IntVar(&c.MemdbWarnRelationships, "memdb-warn-relationships", c.MemdbWarnRelationships, "with --datastore memory: warn in the log and in /readyz past this many relationships (memdb's uncached checks slow down with size); 0 = never (TRELLIS_MEMDB_WARN_RELATIONSHIPS)")
	f.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json (TRELLIS_LOG_FORMAT)")
	f.BoolVar(&c.AccessLog, "access-log", c.AccessLog, "log requests as JSON lines on stderr, with their X-Request-Id (TRELLIS_ACCESS_LOG)")
	f.Float64Var(&c.AccessLogSample, "access-log-sample", c.AccessLogSample, "fraction of successful requests the access log keeps, 0 to 1; errors are always logged (TRELLIS_ACCESS_LOG_SAMPLE)")
	f.Float64Var(&c.RateLimitKey, "rate-limit-key", c.RateLimitKey, "requests a second per API key (a key's own rateLimit wins); 0 = none (TRELLIS_RATE_LIMIT_KEY)")
	f.IntVar(&c.RateLimitKeyBurst, "rate-limit-key-burst", c.RateLimitKeyBurst, "burst of --rate-limit-key (TRELLIS_RATE_LIMIT_KEY_BURST)")
	f.Float64Var(&c.RateLimitOrg, "rate-limit-org", c.RateLimitOrg, "requests a second per organization (its tokens and keys together); 0 = none (TRELLIS_RATE_LIMIT_ORG)")
	f.IntVar(&c.RateLimitOrgBurst, "rate-limit-org-burst", c.RateLimitOrgBurst, "burst of --rate-limit-org (TRELLIS_RATE_LIMIT_ORG_BURST)")
	f.BoolVar(&c.RateLimitChecks, "rate-limit-checks", c.RateLimitChecks, "count checks, lookups and explains through API keys too (else only keys with their own rateLimit) (TRELLIS_RATE_LIMIT_CHECKS)")
	f.StringVar(&c.DecisionLog, "decision-log", c.DecisionLog, "write every check's decision as NDJSON to stdout or to this file (appended); off when empty (TRELLIS_DECISION_LOG)")
	f.StringSliceVar(&c.DecisionLogTypes, "decision-log-types", c.DecisionLogTypes, "log only checks on these resource types, comma-separated (TRELLIS_DECISION_LOG_TYPES)")
	f.Float64Var(&c.DecisionLogSample, "decision-log-sample", c.DecisionLogSample, "fraction of checks the decision log keeps, above 0 to 1 (TRELLIS_DECISION_LOG_SAMPLE)")
	f.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "export OpenTelemetry traces over OTLP/HTTP to host:port; off when empty (TRELLIS_OTLP_ENDPOINT)")
	f.BoolVar(&c.OTLPInsecure, "otlp-insecure", c.OTLPInsecure, "send traces in plaintext (TRELLIS_OTLP_INSECURE)")
	bindNodeFlags(f, c)
	f.BoolVar(&c.AccessHistory, "access-history", c.AccessHistory, "record the relationship changelog from the engine's watch stream, for access as of a past time (TRELLIS_ACCESS_HISTORY)")
	f.DurationVar(&c.AccessHistoryRetention, "access-history-retention", c.AccessHistoryRetention, "how far back POST /v1/access/at answers; 0 = as far as the changelog goes (TRELLIS_ACCESS_HISTORY_RETENTION)")
	f.IntVar(&c.MovePreviewMaxRelationships, "move-preview-max-relationships", c.MovePreviewMaxRelationships, "most relationships a move's impact may load (422 past it); 0 = the default, 20000 (TRELLIS_MOVE_PREVIEW_MAX_RELATIONSHIPS)")
}

// applyEnv fills every flag not set on the command line from TRELLIS_<FLAG>.
func applyEnv(cmd *cobra.Command) error { return applyEnvPrefix(cmd, "TRELLIS_") }

// applyEnvPrefix fills every flag not set on the command line from
// <prefix><FLAG> (dashes as underscores, upper case).
func applyEnvPrefix(cmd *cobra.Command, prefix string) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// auditKey is the key the audit chains' checkpoints are signed with (ADR 0011):
// HKDF-SHA256 of --audit-key, or of the admin key in use when --audit-key is
// empty. Every node sharing a database must be given the same secret, and it
// must not change: checkpoints signed with another key no longer verify.
func auditKey(c Config, adminKey string) audit.Key {
	secret := c.AuditKey
	if secret == "" {
		secret = adminKey
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "trellis audit checkpoints v1", 32)
	if err != nil { // only for lengths HKDF cannot produce; 32 bytes it can
		panic("trellis: deriving the audit key: " + err.Error())
	}
	return k
}
