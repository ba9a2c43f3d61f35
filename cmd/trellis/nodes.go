package main

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-iam/trellis/federation"
	"github.com/trellis-iam/trellis/schema"
)

// bindNodeFlags binds the settings several nodes sharing one database need.
func bindNodeFlags(f *pflag.FlagSet, c *Config) {
	f.StringVar(&c.Issuer, "issuer", c.Issuer, "public URL of this service, the iss of the tokens it signs; the same on every node (default http://<addr>, for local use) (TRELLIS_ISSUER)")
	f.StringVar(&c.KeyEncryptionKey, "key-encryption-key", c.KeyEncryptionKey, "secret the stored token-signing keys are encrypted with, at least 16 characters, the same on every node; derived from --admin-key when empty (TRELLIS_KEY_ENCRYPTION_KEY)")
	f.StringVar(&c.KeyEncryptionKeyFile, "key-encryption-key-file", c.KeyEncryptionKeyFile, "file holding --key-encryption-key (TRELLIS_KEY_ENCRYPTION_KEY_FILE)")
	f.DurationVar(&c.SigningKeyRotation, "signing-key-rotation", c.SigningKeyRotation, "age at which the token-signing key is replaced (TRELLIS_SIGNING_KEY_ROTATION)")
	f.DurationVar(&c.SchemaPoll, "schema-poll", c.SchemaPoll, "how often a node looks for a schema version another node applied (TRELLIS_SCHEMA_POLL)")
}

func (c *Config) validateNodes() []error {
	var errs []error
	if c.Issuer != "" {
		u, err := url.Parse(c.Issuer)
		if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("--issuer must be an absolute http(s) URL without query or fragment, not %q", c.Issuer))
		}
	}
	if c.KeyEncryptionKey != "" && c.KeyEncryptionKeyFile != "" {
		errs = append(errs, errors.New("--key-encryption-key and --key-encryption-key-file are exclusive"))
	}
	if c.KeyEncryptionKeyFile != "" {
		b, err := os.ReadFile(c.KeyEncryptionKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--key-encryption-key-file: %w", err))
		}
		c.KeyEncryptionKey, c.KeyEncryptionKeyFile = strings.TrimSpace(string(b)), ""
	}
	if c.KeyEncryptionKey != "" && len(c.KeyEncryptionKey) < 16 {
		errs = append(errs, errors.New("--key-encryption-key must be at least 16 characters (32 random bytes, e.g. openssl rand -hex 32, recommended)"))
	}
	if c.Store == "postgres" && c.KeyEncryptionKey == "" && c.AdminKey == "" {
		errs = append(errs, errors.New("--store postgres needs --key-encryption-key (TRELLIS_KEY_ENCRYPTION_KEY) or --admin-key (TRELLIS_ADMIN_KEY): the stored signing keys are encrypted with a key every node shares, and a generated admin key is not shared"))
	}
	if c.SigningKeyRotation <= 0 {
		errs = append(errs, errors.New("--signing-key-rotation must be positive"))
	}
	if c.SchemaPoll <= 0 {
		errs = append(errs, errors.New("--schema-poll must be positive"))
	}
	return errs
}

// keyEncryptionKey is the AES-256 key stored signing keys are sealed with:
// HKDF-SHA256 of --key-encryption-key, or of the admin key when it is empty.
// With neither (the memory store and a generated admin key), a random key for
// this process: its tokens do not survive a restart, which the memory store
// does not either.
func keyEncryptionKey(c Config, adminKey string, generatedAdmin bool, log *slog.Logger) []byte {
	secret := c.KeyEncryptionKey
	switch {
	case secret != "":
	case !generatedAdmin:
		secret = adminKey
		if c.Store == "postgres" {
			log.Warn("signing keys are encrypted with a key derived from the admin key: set TRELLIS_KEY_ENCRYPTION_KEY to rotate the admin key independently")
		}
	default:
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		log.Info("signing keys are encrypted with a key of this process only (no TRELLIS_KEY_ENCRYPTION_KEY): tokens will not survive a restart")
		return k
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "trellis signing keys v1", 32)
	if err != nil {
		panic("trellis: deriving the key-encryption key: " + err.Error())
	}
	return k
}

// sealingKey is the key SSO connection secrets are sealed with: derived
// from the key-encryption key (keyEncryptionKey) for that use alone, so the
// one secret an operator keeps covers signing keys and connection secrets.
func sealingKey(kek []byte) []byte {
	k, err := hkdf.Key(sha256.New, kek, nil, "trellis sso connection secrets v1", 32)
	if err != nil {
		panic("trellis: deriving the sealing key: " + err.Error())
	}
	return k
}

// issuer is --issuer, or http://<listen address> for local use (with a
// warning when that is not loopback: tokens then name an address clients and
// other nodes may not share).
func issuer(c Config, listen string, log *slog.Logger) string {
	if c.Issuer != "" {
		if !strings.HasPrefix(c.Issuer, "https://") {
			log.Warn("the token issuer is not https: fine on loopback, not in production", "issuer", c.Issuer)
		}
		return strings.TrimSuffix(c.Issuer, "/")
	}
	iss := "http://" + listen
	log.Warn("no --issuer (TRELLIS_ISSUER): tokens name this node's listen address; set the public https URL, the same on every node, in production", "issuer", iss)
	return iss
}

// followNodes keeps this node in step with the others on its database: it
// adopts schema versions they apply and signing keys they rotate to. The
// returned function stops it and waits.
func followNodes(ctx context.Context, cfg Config, schemas *schema.Manager, signer *federation.Signer, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		schemas.Poll(ctx, cfg.SchemaPoll, func(err error) { log.Warn("schema refresh", "err", err) })
	}()
	go func() {
		defer wg.Done()
		every := min(cfg.SigningKeyRotation/4, time.Minute)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := signer.Refresh(ctx); err != nil && ctx.Err() == nil {
					log.Warn("signing key refresh", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
