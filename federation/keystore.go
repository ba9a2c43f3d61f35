package federation

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// Stored signing keys (SignerConfig.Keys): every node signs with the newest
// key in the store and verifies with every key still published, so a token
// minted by one node verifies on all of them and after a restart. A key is
// current from its creation until the next key's; it stays published (JWKS,
// Verify) for MaxTTL plus Leeway after that, then a rotation deletes it.
// Rotation takes the store's signing-key lock, so nodes rotating at once add
// one key. The private key is stored sealed: AES-256-GCM under the
// key-encryption key, the kid as additional data, so a sealed key cannot be
// moved to another row.

// storeTimeout bounds a store call made from Issue or Verify, which take no context.
const storeTimeout = 5 * time.Second

// reloadEvery is how often Verify may reload keys to find an unknown kid:
// garbage kids cannot make every request a store read.
const reloadEvery = time.Second

func newStoredSigner(cfg SignerConfig) (*Signer, error) {
	block, err := aes.NewCipher(cfg.KeyEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("federation: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("federation: key-encryption key: %w", err)
	}
	s := &Signer{cfg: cfg, kek: aead}
	now := cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := s.load(ctx, now); err != nil {
		return nil, err
	}
	s.mu.RLock()
	fresh := s.current != nil && now.Sub(s.current.created) < cfg.RotateEvery
	s.mu.RUnlock()
	if !fresh {
		if err := s.rotateStored(now, false); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// load installs the stored keys: the newest is current, older ones published
// until MaxTTL after their successor was created.
func (s *Signer) load(ctx context.Context, now time.Time) error {
	var rows []store.SigningKey
	if err := s.cfg.Keys.Read(ctx, func(tx store.Tx) error {
		var err error
		rows, err = tx.ListSigningKeys(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("federation: reading signing keys: %w", err)
	}
	keys, err := s.open(rows)
	if err != nil {
		return err
	}
	s.install(keys, now)
	return nil
}

// install makes keys (newest first) this signer's.
func (s *Signer) install(keys []*signingKey, now time.Time) {
	if len(keys) == 0 {
		return
	}
	for i := 1; i < len(keys); i++ {
		keys[i].retiredAt = keys[i-1].created
	}
	var retired []*signingKey
	for _, k := range keys[1:] {
		if s.published(k, now) {
			retired = append(retired, k)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current, s.retired = keys[0], retired
}

// open unseals stored keys. A key that does not open (sealed under another
// key-encryption key) is an error: the nodes' configurations differ.
func (s *Signer) open(rows []store.SigningKey) ([]*signingKey, error) {
	out := make([]*signingKey, 0, len(rows))
	for _, r := range rows {
		if r.Algorithm != string(jose.ES256) || len(r.Sealed) < s.kek.NonceSize() {
			return nil, fmt.Errorf("federation: stored signing key %q: unsupported or damaged", r.ID)
		}
		nonce, sealed := r.Sealed[:s.kek.NonceSize()], r.Sealed[s.kek.NonceSize():]
		der, err := s.kek.Open(nil, nonce, sealed, []byte(r.ID))
		if err != nil {
			return nil, fmt.Errorf("federation: stored signing key %q does not open with the configured key-encryption key (every node must share it)", r.ID)
		}
		priv, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("federation: stored signing key %q: %w", r.ID, err)
		}
		k, err := signingKeyOf(priv, r.CreatedAt)
		if err != nil {
			return nil, err
		}
		if k.kid != r.ID {
			return nil, fmt.Errorf("federation: stored signing key %q has another thumbprint", r.ID)
		}
		out = append(out, k)
	}
	return out, nil
}

// seal encrypts k's private key for the store.
func (s *Signer) seal(k *signingKey) (store.SigningKey, error) {
	der, err := x509.MarshalECPrivateKey(k.private)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("federation: encoding signing key: %w", err)
	}
	nonce := make([]byte, s.kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{ID: k.kid, Algorithm: string(jose.ES256), Sealed: s.kek.Seal(nonce, nonce, der, []byte(k.kid)), CreatedAt: k.created}, nil
}

// rotateStored adds a new key to the store under its lock, unless (when
// force is false) another node added a fresh one meanwhile, deletes keys no
// longer published, and installs what the store then holds.
func (s *Signer) rotateStored(now time.Time, force bool) error {
	fresh, err := newSigningKey(now)
	if err != nil {
		return err
	}
	row, err := s.seal(fresh)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	var keys []*signingKey
	err = s.cfg.Keys.InTx(ctx, func(tx store.Tx) error {
		rows, err := tx.ListSigningKeys(ctx) // takes the signing-key lock
		if err != nil {
			return err
		}
		if force || len(rows) == 0 || now.Sub(rows[0].CreatedAt) >= s.cfg.RotateEvery {
			if err := tx.InsertSigningKey(ctx, row); err != nil {
				return err
			}
			rows = append([]store.SigningKey{row}, rows...)
		}
		// drop keys whose successor is older than MaxTTL + Leeway: no token they signed is still valid
		for i := 1; i < len(rows); i++ {
			if now.Sub(rows[i-1].CreatedAt) > s.cfg.MaxTTL+Leeway {
				for _, old := range rows[i:] {
					if err := tx.DeleteSigningKey(ctx, old.ID); err != nil && !errors.Is(err, trellis.ErrNotFound) {
						return err
					}
				}
				rows = rows[:i]
				break
			}
		}
		keys, err = s.open(rows)
		return err
	})
	if err != nil {
		return fmt.Errorf("federation: rotating the signing key: %w", err)
	}
	s.install(keys, now)
	return nil
}

// reload reads the stored keys again, at most once per reloadEvery; it
// reports whether it did.
func (s *Signer) reload(now time.Time) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if !s.lastReload.IsZero() && now.Sub(s.lastReload) < reloadEvery && now.After(s.lastReload) {
		return false
	}
	s.lastReload = now
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return s.load(ctx, now) == nil
}

// Refresh reads the stored keys again (a node calls it on an interval, so
// that it signs with and publishes the key another node rotated to), and
// rotates when the newest key has reached RotateEvery. Without stored keys
// it does nothing.
func (s *Signer) Refresh(ctx context.Context) error {
	if s.cfg.Keys == nil {
		return nil
	}
	now := s.cfg.Now()
	if err := s.load(ctx, now); err != nil {
		return err
	}
	_, err := s.currentKey(now)
	return err
}
