package postgres

// The classifier at the driver edge: which errors mean that the database
// cannot answer now (trellis.ErrUnavailable, a 503 with which a client retries)
// and which mean a request or code the store refuses (the contract's own
// error, or a 500). Each shape is checked through translate, and through the
// statement after it in the same transaction: a caller that goes on past a
// lookup's error (it hoped for "not found") must still learn that the
// database is gone, not that the transaction was aborted (a 500).
//
// The driver's own errors come from pgconn and pgxpool talking to fakeServer,
// a listener that speaks just enough of the protocol to end a session the way
// a server being stopped or restarted does; the rest are built by hand in the
// shapes pgx returns them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trellis-iam/trellis"
)

func TestConnectionFailuresAreUnavailable(t *testing.T) {
	fatal := func(code, msg string) *pgconn.PgError {
		return &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
	}
	shapes := map[string]error{
		"57P01 admin_shutdown":        fatal("57P01", "terminating connection due to administrator command"),
		"57P02 crash_shutdown":        fatal("57P02", "terminating connection because of crash of another server process"),
		"57P03 starting up":           fatal("57P03", "the database system is starting up"),
		"57P03 shutting down":         fatal("57P03", "the database system is shutting down"),
		"57P03 in recovery":           fatal("57P03", "the database system is in recovery mode"),
		"57P05 idle_session_timeout":  fatal("57P05", "terminating connection due to idle-session timeout"),
		"08006 connection_failure":    fatal("08006", "connection failure"),
		"08001 unable to connect":     fatal("08001", "could not connect"),
		"08003 no connection":         fatal("08003", "connection does not exist"),
		"53300 too_many_connections":  fatal("53300", "sorry, too many clients already"),
		"53100 disk_full":             &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: "could not extend file: No space left on device"},
		"57014 statement_timeout":     &pgconn.PgError{Severity: "ERROR", Code: "57014", Message: "canceling statement due to statement timeout"},
		"55P03 lock_timeout":          &pgconn.PgError{Severity: "ERROR", Code: "55P03", Message: "canceling statement due to lock timeout"},
		"25006 read-only transaction": &pgconn.PgError{Severity: "ERROR", Code: "25006", Message: "cannot execute INSERT in a read-only transaction"},
		"57P01 under deallocate":      fmt.Errorf("failed to deallocate cached statement(s): %w", fatal("57P01", "terminating connection due to administrator command")),
		"EOF":                         fmt.Errorf("failed to receive message: %w", io.EOF),
		"unexpected EOF":              fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF),
		"read: connection reset": fmt.Errorf("failed to receive message: %w",
			&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}),
		"write: broken pipe": fmt.Errorf("failed to write startup message: %w",
			&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}),
		"dial: connection refused":  &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
		"deadline while connecting": fmt.Errorf("failed to connect: %w", context.DeadlineExceeded),
		"closed pool (text)":        errors.New("closed pool"),
	}
	for name, err := range driverConnectionFailures(t) {
		shapes["driver: "+name] = err
	}
	for name, err := range shapes {
		got := translate("reading an organization", err)
		if !errors.Is(got, trellis.ErrUnavailable) {
			t.Errorf("%s (%T: %v): translated to %v; want ErrUnavailable", name, err, err, got)
		}
		later := (&tx{write: true, err: got}).usable("inserting an organization", true)
		if !errors.Is(later, trellis.ErrUnavailable) {
			t.Errorf("%s: the next statement of the transaction: %v; want ErrUnavailable", name, later)
		}
	}
}

func TestOtherErrorsAreNotUnavailable(t *testing.T) {
	pgErr := func(code, msg string) *pgconn.PgError {
		return &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
	}
	unique := pgErr("23505", "duplicate key value violates unique constraint")
	unique.ConstraintName, unique.Detail = "orgs_slug_key", "Key (slug)=(acme) already exists."
	shapes := map[string]error{
		"23505 unique_violation":      unique,
		"23503 foreign_key_violation": pgErr("23503", "insert or update violates foreign key constraint"),
		"23502 not_null_violation":    pgErr("23502", "null value in column violates not-null constraint"),
		"23514 check_violation":       pgErr("23514", "new row violates check constraint"),
		"40001 serialization_failure": pgErr("40001", "could not serialize access due to concurrent update"),
		"42601 syntax_error":          pgErr("42601", "syntax error at or near"),
		"42P01 undefined_table":       pgErr("42P01", `relation "orgs" does not exist`),
		"22P02 invalid input":         pgErr("22P02", "invalid input syntax for type uuid"),
		"XX000 internal_error":        pgErr("XX000", "cache lookup failed"),
		"plain error":                 errors.New("boom"),
		"commit that rolled back":     pgx.ErrTxCommitRollback,
		"tx is closed":                pgx.ErrTxClosed,
		"no rows":                     pgx.ErrNoRows,
		"caller left":                 fmt.Errorf("failed to receive message: %w", context.Canceled),
	}
	for name, err := range driverRefusals(t) {
		shapes["driver: "+name] = err
	}
	for name, err := range shapes {
		got := translate("inserting an organization", err)
		if errors.Is(got, trellis.ErrUnavailable) {
			t.Errorf("%s (%T: %v): translated to %v; want anything but ErrUnavailable", name, err, err, got)
		}
		later := (&tx{write: true, err: got}).usable("inserting a membership", true)
		if errors.Is(later, trellis.ErrUnavailable) || errors.Is(later, trellis.ErrConflict) || later == nil {
			t.Errorf("%s: the next statement of the transaction: %v; want an error that is neither ErrUnavailable nor ErrConflict", name, later)
		}
	}
	if got := translate("nothing", nil); got != nil {
		t.Errorf("translate(nil) = %v", got)
	}
}

// driverConnectionFailures are pgconn's and pgxpool's errors for a server
// that refuses, resets, hangs up, shuts down, starts up or never answers.
func driverConnectionFailures(t *testing.T) map[string]error {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := map[string]error{}

	// Nothing listens on the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "postgres://trellis@" + ln.Addr().String() + "/trellis?sslmode=disable&connect_timeout=5"
	_ = ln.Close()
	_, out["connect: refused"] = pgconn.Connect(ctx, refused)

	pool, err := pgxpool.New(ctx, refused)
	if err != nil {
		t.Fatal(err)
	}
	_, out["pool: begin, refused"] = pool.Begin(ctx)
	pool.Close()
	_, out["pool: begin on a closed pool"] = pool.Begin(ctx)

	// The connection is reset as soon as it is accepted.
	_, out["connect: reset"] = pgconn.Connect(ctx, fakeServer(t, func(c *net.TCPConn, _ *pgproto3.Backend) {
		_ = c.SetLinger(0)
	}))
	// The server refuses the session: it is starting up (or shutting down).
	_, out["connect: the database system is starting up"] = pgconn.Connect(ctx, fakeServer(t, func(_ *net.TCPConn, be *pgproto3.Backend) {
		if _, err := be.ReceiveStartupMessage(); err == nil {
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P03", Message: "the database system is starting up"})
			_ = be.Flush()
		}
	}))
	// The server accepts the connection and never answers.
	silent := fakeServer(t, func(c *net.TCPConn, _ *pgproto3.Backend) { _, _ = io.Copy(io.Discard, c) })
	shortCtx, shortCancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, out["connect: no answer before the deadline"] = pgconn.Connect(shortCtx, silent)
	shortCancel()

	// A session that the server ends at the next statement.
	query := func(name string, end func(c *net.TCPConn, be *pgproto3.Backend)) {
		url := fakeServer(t, func(c *net.TCPConn, be *pgproto3.Backend) {
			if handshake(be) == nil {
				if _, err := be.Receive(); err == nil {
					end(c, be)
				}
			}
		})
		conn, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connecting to the fake server: %v", err)
		}
		defer conn.Close(ctx)
		_, out["query: "+name] = conn.Exec(ctx, "SELECT 1").ReadAll()
		_, out["query after "+name+" (conn closed)"] = conn.Exec(ctx, "SELECT 1").ReadAll()
	}
	query("the server hangs up", func(*net.TCPConn, *pgproto3.Backend) {})
	query("the connection is reset", func(c *net.TCPConn, _ *pgproto3.Backend) { _ = c.SetLinger(0) })
	query("terminated by the administrator", func(_ *net.TCPConn, be *pgproto3.Backend) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
			Message: "terminating connection due to administrator command"})
		_ = be.Flush()
	})
	for name, err := range out {
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
	}
	return out
}

// driverRefusals are errors of a server that is up and refuses a statement.
func driverRefusals(t *testing.T) map[string]error {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	url := fakeServer(t, func(c *net.TCPConn, be *pgproto3.Backend) {
		if handshake(be) != nil {
			return
		}
		if _, err := be.Receive(); err != nil {
			return
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23505",
			Message: `duplicate key value violates unique constraint "orgs_slug_key"`, ConstraintName: "orgs_slug_key",
			Detail: "Key (slug)=(acme) already exists."})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		_ = be.Flush()
		_, _ = io.Copy(io.Discard, c) // until the client hangs up
	})
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to the fake server: %v", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "INSERT INTO orgs …").ReadAll()
	if err == nil {
		t.Fatal("the fake server's unique violation: no error")
	}
	return map[string]error{"unique violation": err}
}

// fakeServer listens on loopback and runs session on every connection it
// accepts, then closes it; it returns a connection string for it. Everything
// ends with t.
func fakeServer(t *testing.T, session func(c *net.TCPConn, be *pgproto3.Backend)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				session(c.(*net.TCPConn), pgproto3.NewBackend(c, c))
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "postgres://trellis@" + ln.Addr().String() + "/trellis?sslmode=disable&connect_timeout=5"
}

// handshake accepts the startup message without authentication.
func handshake(be *pgproto3.Backend) error {
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return be.Flush()
}
