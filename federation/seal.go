package federation

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Sealer encrypts secrets Trellis must recover (an OIDC connection's client
// secret) with AES-256-GCM under the key-encryption key. A sealed value is
// nonce ‖ ciphertext ‖ tag; the additional data binds it to its row, so a
// sealed secret copied to another connection does not open.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer over a 32-byte key-encryption key.
func NewSealer(kek []byte) (*Sealer, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("federation: the key-encryption key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("federation: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("federation: key-encryption key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// RandomKEK returns a fresh 32-byte key (memory mode without a configured key:
// sealed secrets then live as long as the process).
func RandomKEK() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// Seal encrypts plain, bound to aad.
func (s *Sealer) Seal(plain, aad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, aad)
}

// errSealed is a sealed value that does not open: another key, another row, or tampering.
var errSealed = errors.New("federation: sealed secret does not open under the key-encryption key")

// Open decrypts sealed, which must have been sealed with aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errSealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}
