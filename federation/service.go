package federation

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// Defaults of Config.
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 24 * time.Hour
	DefaultIDTokenTTL      = 15 * time.Minute
	DefaultLoginTTL        = 10 * time.Minute
)

// Config configures sign-in.
type Config struct {
	// Issuer is Trellis's public base URL: the OpenID provider's issuer and
	// the base of every redirect and callback URL. http is allowed (make run).
	Issuer string
	// KEK is the 32-byte key-encryption key that seals connection secrets.
	KEK []byte
	// AccessTokenTTL (≤ 15 min), RefreshTokenTTL, IDTokenTTL bound what the
	// provider issues; LoginTTL bounds a sign-in in flight.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	IDTokenTTL      time.Duration
	LoginTTL        time.Duration
	// MetadataRefresh is how old SAML IdP metadata fetched by URL may grow
	// before a sign-in fetches it again (default 24 h).
	MetadataRefresh time.Duration
	// HTTPClient calls customer IdPs (discovery, token, keys); default a
	// client with a 10 s timeout.
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// Validate fills defaults and checks bounds.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return trellis.Invalid("issuer", "must be an absolute http(s) URL")
	}
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	if len(c.KEK) != 32 {
		return trellis.Invalid("keyEncryptionKey", "must be 32 bytes")
	}
	switch {
	case c.AccessTokenTTL == 0:
		c.AccessTokenTTL = DefaultAccessTokenTTL
	case c.AccessTokenTTL < 0 || c.AccessTokenTTL > DefaultAccessTokenTTL:
		return trellis.Invalid("accessTokenTTL", "must be between 0 and %s", DefaultAccessTokenTTL)
	}
	if c.RefreshTokenTTL <= 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.IDTokenTTL <= 0 {
		c.IDTokenTTL = DefaultIDTokenTTL
	}
	if c.LoginTTL <= 0 {
		c.LoginTTL = DefaultLoginTTL
	}
	if c.MetadataRefresh <= 0 {
		c.MetadataRefresh = DefaultMetadataRefresh
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Service is sign-in: organizations' connections, the applications that sign
// users in through Trellis, and the flows between them. Rows it owns
// (connections, applications) are written through the directory's audited
// operations; users, memberships and their relationships only by the
// directory itself (SignInSSO).
type Service struct {
	cfg    Config
	dir    *directory.Service
	store  store.Store
	keys   KeySource
	sealer *Sealer
	op     *provider
	replay *replayCache // SAML assertions accepted (this process)
	spKeys *spKeys      // SAML SP signing keys, derived per connection
	// attempts: stale SAML metadata refreshes tried (saml_metadata.go)
	attempts metadataAttempts
}

// New builds the sign-in service.
func New(cfg Config, dir *directory.Service, st store.Store, keys KeySource) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sealer, err := NewSealer(cfg.KEK)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, dir: dir, store: st, keys: keys, sealer: sealer, replay: newReplayCache(cfg.Now), spKeys: newSPKeys(),
		attempts: metadataAttempts{at: map[string]time.Time{}}}
	if s.op, err = newProvider(s); err != nil {
		return nil, fmt.Errorf("federation: OpenID provider: %w", err)
	}
	return s, nil
}

// newID returns a prefixed random id (80 bits, lower-case base32).
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// newSecret returns a 256-bit random secret, base64url.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func notFound(what, id string) error { return fmt.Errorf("%w: %s %q", trellis.ErrNotFound, what, id) }
