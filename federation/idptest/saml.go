package idptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/crewjam/saml"
)

// SAML is a running SAML 2.0 IdP for tests (crewjam/saml's
// IdentityProvider), with a key and certificate generated at start. It signs
// the configured user in at once. Tests set Mutate to change the assertion
// before it is signed (audience, recipient, times), or SignWith to sign with
// a key its metadata does not publish.
type SAML struct {
	*httptest.Server
	IdP  *saml.IdentityProvider
	Cert *x509.Certificate

	mu sync.Mutex
	// Session is who signs in.
	Session saml.Session
	// Mutate changes the assertion before it is signed.
	Mutate func(req *saml.IdpAuthnRequest)
	spURL  string // where to fetch the SP's metadata
	signer *rsa.PrivateKey
	// lastErr is why the IdP last refused a request.
	lastErr error
}

// NewSAML starts an IdP.
func NewSAML() *SAML {
	key, cert := keyPair("Test IdP")
	s := &SAML{Cert: cert, signer: key}
	mux := http.NewServeMux()
	s.Server = httptest.NewServer(mux)
	base, _ := url.Parse(s.URL)
	s.IdP = &saml.IdentityProvider{
		Key: key, Certificate: cert,
		MetadataURL:             *base.JoinPath("/metadata"),
		SSOURL:                  *base.JoinPath("/sso"),
		ServiceProviderProvider: s,
		SessionProvider:         s,
		AssertionMaker:          s,
		OnError: func(w http.ResponseWriter, _ *http.Request, status int, err error) {
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			http.Error(w, http.StatusText(status), status)
		},
	}
	mux.HandleFunc("/metadata", s.IdP.ServeMetadata)
	mux.HandleFunc("/sso", s.IdP.ServeSSO)
	return s
}

func keyPair(cn string) (*rsa.PrivateKey, *x509.Certificate) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert
}

// MetadataXML is the IdP's metadata, as a customer pastes it into a connection.
func (s *SAML) MetadataXML() string {
	b, err := xml.Marshal(s.IdP.Metadata())
	if err != nil {
		panic(err)
	}
	return string(b)
}

// SetSP names the SP metadata URL the IdP trusts (fetched when needed).
func (s *SAML) SetSP(metadataURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spURL = metadataURL
}

// SetSession sets who signs in next and clears Mutate.
func (s *SAML) SetSession(sess saml.Session, mutate func(req *saml.IdpAuthnRequest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Session, s.Mutate = sess, mutate
}

// SignWithForeignKey makes the IdP sign with a key its metadata does not publish.
func (s *SAML) SignWithForeignKey() {
	key, cert := keyPair("Impostor")
	s.IdP.Key, s.IdP.Certificate = key, cert
}

// GetServiceProvider fetches the SP's metadata (saml.ServiceProviderProvider).
func (s *SAML) GetServiceProvider(_ *http.Request, _ string) (*saml.EntityDescriptor, error) {
	s.mu.Lock()
	u := s.spURL
	s.mu.Unlock()
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, os.ErrNotExist
	}
	b, _ := io.ReadAll(resp.Body)
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal(b, &ed); err != nil {
		return nil, err
	}
	return &ed, nil
}

// GetSession signs the configured user in (saml.SessionProvider).
func (s *SAML) GetSession(_ http.ResponseWriter, _ *http.Request, _ *saml.IdpAuthnRequest) *saml.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.Session
	sess.ID, sess.CreateTime, sess.ExpireTime = "sess1", time.Now(), time.Now().Add(time.Hour)
	return &sess
}

// MakeAssertion is crewjam's, then Mutate (saml.AssertionMaker).
func (s *SAML) MakeAssertion(req *saml.IdpAuthnRequest, session *saml.Session) error {
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(req, session); err != nil {
		return err
	}
	s.mu.Lock()
	m := s.Mutate
	s.mu.Unlock()
	if m != nil {
		m(req)
	}
	return nil
}

// LastError is why the IdP last refused a request (nil: it has not since
// the last call); it clears it.
func (s *SAML) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.lastErr
	s.lastErr = nil
	return err
}
