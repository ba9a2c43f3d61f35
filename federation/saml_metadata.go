package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// SAML IdP metadata by URL. A connection may name metadataUrl instead of
// pasting metadataXml: Trellis fetches it (https only, http on loopback for
// local IdPs; 10 s; at most 256 KiB; redirects only to such URLs; it must
// parse as an IdP's metadata) when the connection is created or patched —
// a failure then refuses the change — again on demand (POST
// …/connections/{id}/refresh-metadata), and when a sign-in finds it older
// than Config.MetadataRefresh (default 24 h; a failed attempt is retried at
// most every metadataRetry). A failed refresh keeps the previous metadata
// and is visible in the connection (metadataError, metadataFetchedAt) and
// audited (connection.metadata.refresh).

const (
	// DefaultMetadataRefresh is how old fetched IdP metadata may grow before a sign-in refreshes it.
	DefaultMetadataRefresh = 24 * time.Hour
	metadataFetchTimeout   = 10 * time.Second
	metadataRetry          = 5 * time.Minute
)

// validMetadataURL: an absolute https URL (http only on loopback) without
// user info or fragment.
func validMetadataURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > maxFieldLength {
		return "", trellis.Invalid("metadataUrl", "must be an absolute https URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", trellis.Invalid("metadataUrl", "must be https (http only on loopback)")
		}
	default:
		return "", trellis.Invalid("metadataUrl", "must be an absolute https URL")
	}
	return raw, nil
}

// fetchMetadata fetches an IdP's metadata from u.
func (s *Service) fetchMetadata(ctx context.Context, u string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/samlmetadata+xml, application/xml, text/xml")
	client := *s.cfg.HTTPClient
	if t, ok := client.Transport.(*http.Transport); ok || client.Transport == nil {
		if !ok {
			t = http.DefaultTransport.(*http.Transport)
		}
		t = t.Clone()
		t.DialContext = (&net.Dialer{Timeout: metadataFetchTimeout, Control: publicOrLoopback}).DialContext
		client.Transport = t
	}
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		_, err := validMetadataURL(r.URL.String())
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known; keep the reason
		}
		return "", fmt.Errorf("fetch failed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch failed: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataXML+1))
	if err != nil {
		return "", fmt.Errorf("fetch failed: %v", err)
	}
	if len(body) > maxMetadataXML {
		return "", fmt.Errorf("metadata larger than %d bytes", maxMetadataXML)
	}
	if _, err := parseIdPMetadata(string(body)); err != nil {
		var ve *trellis.ValidationError
		if errors.As(err, &ve) {
			return "", errors.New("not an IdP's metadata: " + ve.Message)
		}
		return "", err
	}
	return string(body), nil
}

// publicOrLoopback refuses to connect to private, link-local or unspecified
// addresses: an organization's admin must not make Trellis fetch from its
// internal network. Loopback stays allowed (local IdPs, tests).
func publicOrLoopback(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() {
		return nil
	}
	if ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("address %s is not public", ip)
	}
	return nil
}

// prefetch fetches the metadata a POST or PATCH (of connection id; "" on
// POST) names by URL, before the operation's transaction (no network inside
// it), and only for a caller who may manage the organization's SSO and a
// SAML connection; it fills in.MetadataXML.
func (s *Service) prefetch(ctx context.Context, p directory.Principal, org, id string, in *ConnectionInput) error {
	if in.MetadataURL == nil || *in.MetadataURL == "" {
		return nil
	}
	typ := in.Type
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) error {
		if id == "" {
			return nil
		}
		c, err := connectionOf(ctx, tx, o, id)
		typ = c.Type
		return err
	})
	switch {
	case err != nil:
		return err
	case typ != store.ConnectionSAML:
		return trellis.Invalid("metadataUrl", "is for saml connections")
	case in.MetadataXML != nil:
		return trellis.Invalid("metadataUrl", "give metadataXml or metadataUrl, not both")
	}
	u, err := validMetadataURL(*in.MetadataURL)
	if err != nil {
		return err
	}
	md, err := s.fetchMetadata(ctx, u)
	if err != nil {
		return trellis.Invalid("metadataUrl", "%s", err.Error())
	}
	in.MetadataURL, in.MetadataXML = &u, &md
	return nil
}

// RefreshMetadata fetches connection id's IdP metadata again now; a failure
// keeps the previous metadata and is recorded in the connection's status.
func (s *Service) RefreshMetadata(ctx context.Context, p directory.Principal, org, id string) (Connection, error) {
	var conn store.Connection
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) (err error) {
		conn, err = connectionOf(ctx, tx, o, id)
		return err
	})
	if err != nil {
		return Connection{}, err
	}
	if conn.MetadataURL == "" {
		return Connection{}, trellis.Conflict("no_metadata_url", "connection %s has no metadataUrl", id)
	}
	md, ferr := s.fetchMetadata(ctx, conn.MetadataURL)
	var out Connection
	err = s.dir.AdministerOrg(ctx, p, org, permManageSSO, "connection.metadata.refresh", func(tx store.Tx, o store.Org, rec directory.Recorder) error {
		c, err := connectionOf(ctx, tx, o, id)
		if err != nil {
			return err
		}
		if c.MetadataURL == conn.MetadataURL { // unless it changed meanwhile
			s.applyFetch(&c, md, ferr)
			if err := tx.UpdateConnection(ctx, c); err != nil {
				return err
			}
		}
		rec(o.ID, "connection.metadata.refresh", "connection:"+c.ID, fetchDetails(c, ferr))
		out = s.connectionView(c)
		return nil
	})
	return out, err
}

// applyFetch records a fetch's outcome on c.
func (s *Service) applyFetch(c *store.Connection, md string, ferr error) {
	if ferr != nil {
		c.MetadataError = ferr.Error()
		return
	}
	now := s.cfg.Now().UTC()
	c.MetadataXML, c.MetadataFetchedAt, c.MetadataError = md, &now, ""
}

func fetchDetails(c store.Connection, ferr error) map[string]any {
	d := map[string]any{"metadataUrl": c.MetadataURL, "ok": ferr == nil}
	if ferr != nil {
		d["error"] = ferr.Error()
	}
	return d
}

// metadataAttempts remembers when a stale connection's refresh was last
// tried (this process), so a failing IdP is not fetched at every sign-in.
type metadataAttempts struct {
	mu sync.Mutex
	at map[string]time.Time
}

// refreshIfStale refreshes conn's metadata when a sign-in finds it older
// than MetadataRefresh; it returns the connection to sign in with (its
// previous metadata when the fetch fails). The row is the connection's
// own: the refresh is audited as the connection.
func (s *Service) refreshIfStale(ctx context.Context, conn store.Connection) store.Connection {
	now := s.cfg.Now()
	if conn.MetadataURL == "" || conn.MetadataFetchedAt != nil && now.Sub(*conn.MetadataFetchedAt) < s.cfg.MetadataRefresh {
		return conn
	}
	s.attempts.mu.Lock()
	last, tried := s.attempts.at[conn.ID]
	if tried && now.Sub(last) < metadataRetry {
		s.attempts.mu.Unlock()
		return conn
	}
	s.attempts.at[conn.ID] = now
	s.attempts.mu.Unlock()
	md, ferr := s.fetchMetadata(ctx, conn.MetadataURL)
	var out store.Connection
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		c, err := tx.GetConnection(ctx, conn.ID)
		if err != nil || c.MetadataURL != conn.MetadataURL {
			return errors.New("connection changed meanwhile")
		}
		s.applyFetch(&c, md, ferr)
		out = c
		return tx.UpdateConnection(ctx, c)
	})
	if err != nil {
		return conn
	}
	p := directory.Principal{Kind: directory.KindConnection, ID: conn.ID, Org: conn.Org}
	if err := s.dir.RecordEvent(ctx, p, conn.Org, "connection.metadata.refresh", "connection:"+conn.ID, fetchDetails(out, ferr)); err != nil {
		s.cfg.Logger.Warn("audit of a metadata refresh failed", "err", err)
	}
	return out
}
