package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/trellis-iam/trellis"
)

// errClosed is what every call on a closed Store returns.
var errClosed = fmt.Errorf("%w: store/postgres: the store is closed", trellis.ErrUnavailable)

// uniqueKeys names, in the contract's words, the key each unique constraint
// of the schema guards; conflict messages reach API clients.
var uniqueKeys = map[string]string{
	"orgs_pkey":                         "organization id",
	"orgs_slug_key":                     "organization slug",
	"org_domains_pkey":                  "organization domain position",
	"org_domains_verified_key":          "verified domain",
	"users_pkey":                        "user id",
	"users_email_key":                   "user email",
	"memberships_pkey":                  "membership",
	"groups_pkey":                       "group id",
	"group_members_pkey":                "group member",
	"roles_pkey":                        "role id",
	"roles_org_key_key":                 "role key",
	"invitations_pkey":                  "invitation id",
	"invitations_token_hash_key":        "invitation token hash",
	"service_accounts_pkey":             "service account id",
	"api_keys_pkey":                     "API key id",
	"provider_api_keys_pkey":            "API key id",
	"schema_versions_pkey":              "schema version",
	"signing_keys_pkey":                 "signing key id",
	"delegations_pkey":                  "delegation id",
	"impersonations_pkey":               "impersonation id",
	"audit_events_pkey":                 "audit position",
	"audit_heads_pkey":                  "audit head",
	"outbox_pkey":                       "outbox seq",
	"sso_connections_pkey":              "connection id",
	"applications_pkey":                 "application id",
	"applications_client_id_key":        "client id",
	"sso_identities_pkey":               "identity link",
	"sso_policies_pkey":                 "sign-in policy",
	"oauth_auth_requests_pkey":          "authorization request id",
	"oauth_auth_requests_code_hash_key": "authorization code",
	"oauth_grants_pkey":                 "grant id",
	"oauth_access_tokens_pkey":          "access token id",
	"oauth_refresh_tokens_pkey":         "refresh token",
	"oauth_pending_logins_pkey":         "pending login",
}

// secretKeys are keys whose values conflict messages leave out.
var secretKeys = map[string]bool{"invitations_token_hash_key": true, "oauth_auth_requests_code_hash_key": true,
	"oauth_refresh_tokens_pkey": true, "oauth_pending_logins_pkey": true}

// keyDetail matches the DETAIL of a unique violation: Key (slug)=(acme) already exists.
var keyDetail = regexp.MustCompile(`^Key \((.*)\)=\((.*)\) already exists\.?$`)

// translate turns a driver error into the contract's errors, once, at the
// edge: unique violations are trellis.ErrConflict naming the key; a server or
// network that cannot answer (see unavailable) is trellis.ErrUnavailable; a
// cancelled context stays context.Canceled (the caller left; nothing is wrong
// with the store). Everything else is wrapped with op for the logs.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return translateServer(op, pgErr, err)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("store/postgres: %s: %w", op, err)
	case unavailable(err):
		return fmt.Errorf("%w: store/postgres: %s: %w", trellis.ErrUnavailable, op, err)
	}
	return fmt.Errorf("store/postgres: %s: %w", op, err)
}

func translateServer(op string, pgErr *pgconn.PgError, err error) error {
	code := pgErr.Code
	switch {
	case code == "23505": // unique_violation
		return fmt.Errorf("%w: %s", trellis.ErrConflict, conflictMessage(pgErr))
	case code == "40001" || code == "40P01": // serialization_failure, deadlock_detected
		return fmt.Errorf("%w: a concurrent transaction changed the same rows; retry (store/postgres: %s: %v)", trellis.ErrConflict, op, err)
	case code == "22021" || code == "22P05": // character_not_in_repertoire, untranslatable_character
		return fmt.Errorf("store/postgres: %s: %w", op, trellis.Invalid("", "text must be valid UTF-8 without NUL characters"))
	case unavailableCode(code):
		return fmt.Errorf("%w: store/postgres: %s: %w", trellis.ErrUnavailable, op, err)
	case code == "42P01" || code == "42703": // undefined_table, undefined_column
		return fmt.Errorf("store/postgres: %s: the database schema is missing or out of date (run `trellis migrate`): %w", op, err)
	}
	return fmt.Errorf("store/postgres: %s: %w", op, err)
}

// unavailable reports whether err means that the database cannot answer now,
// as opposed to a request or code it refuses: the server could not be reached
// or the connection broke (see connectionLost), the server is shutting down,
// starting up or out of resources, or the time ran out. A retry may succeed;
// the API answers 503. An error the server sent decides by its SQLSTATE
// alone (unavailableCode), even when the connection broke too.
func unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || connectionLost(err)
}

// unavailableCode reports the SQLSTATEs of a server that cannot answer now.
func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection_exception
		strings.HasPrefix(code, "53"), // insufficient_resources: too many connections, disk full, out of memory
		code == "57P01",               // admin_shutdown: a fast shutdown, or pg_terminate_backend
		code == "57P02",               // crash_shutdown: another backend crashed, the server restarts
		code == "57P03",               // cannot_connect_now: starting up, shutting down, in recovery
		code == "57P05",               // idle_session_timeout: the server closed the session
		code == "57014",               // query_canceled: statement_timeout
		code == "55P03",               // lock_not_available: lock_timeout
		code == "25006":               // read_only_sql_transaction: a standby, or a primary being demoted
		return true
	}
	return false
}

// conflictMessage says which key is taken, as `organization slug "acme" is taken`.
func conflictMessage(pgErr *pgconn.PgError) string {
	what, ok := uniqueKeys[pgErr.ConstraintName]
	if !ok {
		what = "unique key " + pgErr.ConstraintName
	}
	m := keyDetail.FindStringSubmatch(pgErr.Detail)
	switch {
	case m == nil || secretKeys[pgErr.ConstraintName]:
		return what + " is taken"
	case strings.Contains(m[1], ","): // a composite key: show every column's value
		return fmt.Sprintf("%s (%s) is taken", what, m[2])
	}
	return fmt.Sprintf("%s %q is taken", what, m[2])
}

// connectionLost reports errors that mean the server could not be reached or
// the connection broke: failed connects, network errors, an EOF mid-protocol,
// a closed pool, and the driver's "nothing was sent" errors on a dead connection.
func connectionLost(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.SafeToRetry(err):
		return true
	}
	// pgxpool returns puddle's unexported-package sentinel; its text is its API.
	return err.Error() == "closed pool"
}

func notFound(what, key string) error {
	return fmt.Errorf("%w: %s %q", trellis.ErrNotFound, what, key)
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{trellis.ErrConflict}, args...)...)
}
