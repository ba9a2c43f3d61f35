package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// Signed AuthnRequests. Each SAML connection's SP signs its AuthnRequests
// (HTTP-Redirect query signature, ECDSA-SHA256) with a P-256 key of its own,
// derived from the key-encryption key and the connection id (HKDF-SHA256):
// every node derives the same key, nothing is stored, and no two
// connections share one. Its self-signed certificate is in the SP metadata
// (KeyDescriptor use="signing", AuthnRequestsSigned="true"), which the
// customer registers at its IdP. The certificate is made once per process
// (an ECDSA signature is randomized, so another node's certificate differs
// in its signature bytes but carries the same key, subject, serial and
// validity); IdPs verify requests with its public key.

// spKeys caches each connection's derived key and certificate.
type spKeys struct {
	mu   sync.Mutex
	keys map[string]spKey
}

type spKey struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newSPKeys() *spKeys { return &spKeys{keys: map[string]spKey{}} }

// spKey returns connection c's SP signing key and certificate.
func (s *Service) spKey(c store.Connection) (spKey, error) {
	s.spKeys.mu.Lock()
	defer s.spKeys.mu.Unlock()
	if k, ok := s.spKeys.keys[c.ID]; ok {
		return k, nil
	}
	var key *ecdsa.PrivateKey
	for i := 0; key == nil; i++ { // a scalar ≥ the group order (odds 2⁻³²) takes the next derivation
		raw, err := hkdf.Key(sha256.New, s.cfg.KEK, nil, fmt.Sprintf("trellis/saml-sp/%s/%d", c.ID, i), 32)
		if err != nil {
			return spKey{}, err
		}
		if key, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), raw); err != nil && i > 8 {
			return spKey{}, fmt.Errorf("federation: derive SP key: %w", err)
		}
	}
	serial := sha256.Sum256([]byte("trellis/saml-sp/" + c.ID))
	from := c.CreatedAt.UTC().Truncate(24 * time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial[:16]),
		Subject:      pkix.Name{CommonName: "Trellis SAML SP " + c.ID},
		NotBefore:    from.Add(-24 * time.Hour), NotAfter: from.AddDate(20, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return spKey{}, fmt.Errorf("federation: SP certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return spKey{}, err
	}
	k := spKey{key: key, cert: cert}
	s.spKeys.keys[c.ID] = k
	return k, nil
}
