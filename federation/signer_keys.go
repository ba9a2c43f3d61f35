package federation

import (
	"crypto/ecdsa"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySource is what the OpenID provider signs with and publishes: the current
// signing key and every public key still valid. The Signer is one; a store of
// rotated keys shared by every node is another.
type KeySource interface {
	// CurrentKey returns the key to sign with now (rotating it when due).
	CurrentKey() (kid string, key *ecdsa.PrivateKey, err error)
	// PublicKeys are the keys tokens may be verified with, current first.
	PublicKeys() []jose.JSONWebKey
}

var _ KeySource = (*Signer)(nil)

// CurrentKey returns the Signer's current ES256 key.
func (s *Signer) CurrentKey() (string, *ecdsa.PrivateKey, error) {
	k, err := s.currentKey(s.cfg.Now())
	if err != nil {
		return "", nil, err
	}
	return k.kid, k.private, nil
}

// PublicKeys returns the published public keys, current first (as JWKS).
func (s *Signer) PublicKeys() []jose.JSONWebKey {
	now := s.cfg.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []jose.JSONWebKey{{Key: s.current.public, KeyID: s.current.kid, Algorithm: string(jose.ES256), Use: "sig"}}
	for _, k := range s.retired {
		if s.published(k, now) {
			out = append(out, jose.JSONWebKey{Key: k.public, KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"})
		}
	}
	return out
}
