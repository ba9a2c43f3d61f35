package federation

import (
	"crypto/ecdsa"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// Each connection's SP key is derived from the key-encryption key: every
// node derives the same one, connections and keys differ.
func TestSAMLSPKeyDerivation(t *testing.T) {
	kek, other := RandomKEK(), RandomKEK()
	svc := func(k []byte) *Service { return &Service{cfg: Config{KEK: k}, spKeys: newSPKeys()} }
	conn := store.Connection{ID: "con_a", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	key := func(s *Service, c store.Connection) spKey {
		k, err := s.spKey(c)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := key(svc(kek), conn), key(svc(kek), conn)
	if !a.key.Equal(b.key) {
		t.Fatal("two nodes with one key-encryption key derive different SP keys")
	}
	if !a.cert.PublicKey.(*ecdsa.PublicKey).Equal(b.cert.PublicKey) || a.cert.SerialNumber.Cmp(b.cert.SerialNumber) != 0 {
		t.Fatal("the two nodes' certificates name different keys or serials")
	}
	if key(svc(kek), store.Connection{ID: "con_b", CreatedAt: conn.CreatedAt}).key.Equal(a.key) {
		t.Fatal("two connections share an SP key")
	}
	if key(svc(other), conn).key.Equal(a.key) {
		t.Fatal("another key-encryption key derives the same SP key")
	}
	if !a.cert.NotBefore.Before(conn.CreatedAt) || a.cert.NotAfter.Before(conn.CreatedAt.AddDate(10, 0, 0)) {
		t.Fatalf("certificate validity %s – %s", a.cert.NotBefore, a.cert.NotAfter)
	}
}

// Metadata is not fetched from private, link-local or unspecified addresses.
func TestSAMLMetadataFetchRefusesPrivateAddresses(t *testing.T) {
	s := &Service{cfg: Config{Issuer: "http://127.0.0.1:1", KEK: RandomKEK()}}
	if err := s.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://10.1.2.3/md", "https://192.168.0.1/md", "https://169.254.169.254/latest", "https://[fd00::1]/md"} {
		if _, err := s.fetchMetadata(t.Context(), u); err == nil || !strings.Contains(err.Error(), "not public") {
			t.Errorf("fetch %s: %v, want refused as not public", u, err)
		}
	}
}
