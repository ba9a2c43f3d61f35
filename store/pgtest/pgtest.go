package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled means no PostgreSQL server binaries were found. Callers turn
// it into a loud skip; CI installs PostgreSQL so that it never happens there.
var ErrNotInstalled = errors.New("PostgreSQL not installed: run `apt-get install postgresql` " +
	"(or put initdb and postgres on PATH)")

// debianBinGlob is where Debian and Ubuntu install each major version's
// server binaries; they are not on PATH there. A variable for tests.
var debianBinGlob = "/usr/lib/postgresql/*/bin"

// superuser is the bootstrap superuser initdb creates; trust auth, loopback only.
const superuser = "postgres"

const (
	startTimeout = 30 * time.Second // initdb done, until the server takes connections
	stopTimeout  = 10 * time.Second // fast shutdown, before SIGKILL
	adminTimeout = 30 * time.Second // one CREATE or DROP DATABASE
)

// errExited: the server process ended while we waited for it to take
// connections (most likely another process took the port first).
var errExited = errors.New("postgres exited during startup")

// Server is one running PostgreSQL, owned by the test binary that started it.
// Its methods are safe for concurrent use.
type Server struct {
	bin  string // directory holding initdb and postgres
	root string // temporary directory: data/, the socket, postgres.log
	as   *runAs // nil: run as ourselves
	port int
	// settings are extra `-c name=value` server settings, after the defaults (the last wins)
	settings []string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	log    *os.File

	mu    sync.Mutex // guards admin
	admin *pgx.Conn  // superuser connection to the postgres database, for CREATE/DROP DATABASE

	dbs      atomic.Int64 // names fresh databases
	stopOnce sync.Once
	stopErr  error
	stopped  atomic.Bool
}

// runAs is the system user the server runs as when we are root.
type runAs struct {
	uid, gid int
}

// StartServer initializes a data directory in a fresh temporary directory and
// starts PostgreSQL on a free loopback port, returning once it accepts
// connections. fsync, full_page_writes and synchronous_commit are off: the
// data is thrown away, so durability buys nothing. track_commit_timestamp is
// on, as SpiceDB's Watch on PostgreSQL needs (deploy/docker-compose.yaml sets
// it too). Stop it with Stop. The
// error wraps ErrNotInstalled when the binaries are nowhere to be found.
func StartServer() (*Server, error) { return StartServerWith() }

// StartServerWith is StartServer with extra server settings ("name=value",
// e.g. "track_commit_timestamp=off"), applied after the defaults.
func StartServerWith(settings ...string) (*Server, error) {
	if err := platformSupported(); err != nil {
		return nil, err
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	root, err := makeRoot(as)
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, root: root, as: as, settings: settings}
	if err := s.initdb(); err != nil {
		_ = os.RemoveAll(root)
		return nil, err
	}
	for range 3 { // a port picked free can be taken before postgres binds it
		if err = s.start(); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		s.kill()
		if s.log != nil {
			_ = s.log.Close()
		}
		_ = os.RemoveAll(root)
		return nil, err
	}
	return s, nil
}

// Start starts a server for one test and stops it at t.Cleanup. It skips t,
// loudly, when PostgreSQL is not installed, and fails it on any other error.
func Start(t testing.TB) *Server { t.Helper(); return StartWith(t) }

// StartWith is Start with extra server settings (see StartServerWith).
func StartWith(t testing.TB, settings ...string) *Server {
	t.Helper()
	s, err := StartServerWith(settings...)
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("%v; skipping %s", err, t.Name())
	}
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return s
}

// URL is the superuser's URL of the server's postgres database.
func (s *Server) URL() string { return s.urlFor("postgres") }

// Port is the loopback TCP port the server listens on.
func (s *Server) Port() int { return s.port }

func (s *Server) urlFor(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, database)
}

// NewDatabase creates an empty database for t on the shared server and
// returns its URL; the database is dropped at t.Cleanup. Cleanups registered
// after NewDatabase (closing a pool on it, say) run before the drop, and the
// drop forces out any connection still open.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), identifierPart(t.Name()))
	if len(name) > 63 { // NAMEDATALEN-1; the counter keeps truncated names unique
		name = name[:63]
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := s.adminExec("CREATE DATABASE " + ident); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if s.stopped.Load() {
			return // the server and its data directory are gone already
		}
		if err := s.adminExec("DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return s.urlFor(name)
}

func (s *Server) adminExec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return errors.New("pgtest: server stopped")
	}
	_, err := s.admin.Exec(ctx, sql)
	return err
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10 s), waits
// for it to exit and removes its temporary directory. It may be called again.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopped.Store(true)
		s.mu.Lock()
		if s.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.admin.Close(ctx)
			cancel()
			s.admin = nil
		}
		s.mu.Unlock()
		s.stopErr = s.shutdown()
		if s.log != nil {
			_ = s.log.Close()
		}
		if err := os.RemoveAll(s.root); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("pgtest: removing %s: %w", s.root, err)
		}
	})
	return s.stopErr
}

// shutdown asks the postmaster for a fast shutdown (SIGINT: abort
// transactions, disconnect, checkpoint) and kills it if that takes too long.
func (s *Server) shutdown() error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.exited:
		return fmt.Errorf("pgtest: postgres had already exited: %s", s.logTail())
	default:
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		s.kill()
		return nil
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
		return nil
	case <-timer.C:
		s.kill()
		return fmt.Errorf("pgtest: postgres did not stop within %v; killed it", stopTimeout)
	}
}

// kill SIGKILLs the server's process group and waits for the postmaster.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	killGroup(s.cmd.Process)
	<-s.exited
}

// ---- starting

// findBinaries returns the directory holding both initdb and postgres: PATH
// first, then Debian's per-version directories, newest version first.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		dir := filepath.Dir(p)
		if isFile(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(debianBinGlob) // the pattern is valid
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir))) // "15" of /usr/lib/postgresql/15/bin
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if isFile(filepath.Join(dir, "postgres")) && isFile(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: neither initdb and postgres on PATH nor %s/{initdb,postgres}", ErrNotInstalled, debianBinGlob)
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// serverUser returns whom to run the server as: nil (ourselves) unless we are
// root, which PostgreSQL refuses; then the postgres system user.
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses root; "+
			"no postgres system user to run it as (the postgresql package creates one): %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: postgres user ids %q/%q: %w", u.Uid, u.Gid, err)
	}
	return &runAs{uid: uid, gid: gid}, nil
}

// makeRoot creates the server's temporary directory, owned by the user the
// server runs as, under a parent that user can traverse.
func makeRoot(as *runAs) (string, error) {
	parents := []string{os.TempDir()}
	if as != nil {
		parents = append(parents, "/tmp") // TMPDIR may sit under root's 0700 home
	}
	var errs []error
	for _, parent := range parents {
		if as != nil && !traversable(parent, as.uid) {
			errs = append(errs, fmt.Errorf("%s is not traversable by uid %d", parent, as.uid))
			continue
		}
		root, err := os.MkdirTemp(parent, "trellis-pgtest-")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if as != nil {
			if err := os.Chown(root, as.uid, as.gid); err != nil {
				_ = os.RemoveAll(root)
				return "", fmt.Errorf("pgtest: handing %s to the postgres user: %w", root, err)
			}
		}
		return root, nil
	}
	return "", fmt.Errorf("pgtest: no temporary directory for the server: %w", errors.Join(errs...))
}

// traversable reports whether uid can reach entries of dir: every directory
// from / down to dir grants it search permission (owner or other x bit; group
// membership is not worth resolving here).
func traversable(dir string, uid int) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() {
			return false
		}
		owner, ok := fileOwner(fi)
		if fi.Mode().Perm()&0o001 == 0 && !(ok && owner == uid && fi.Mode().Perm()&0o100 != 0) {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.root, "data") }

// initdb creates the cluster: UTF-8, the C.UTF-8 locale where the system has
// it (so lower() and ILIKE know non-ASCII letters) and plain C where not,
// trust authentication (loopback only), no fsync.
func (s *Server) initdb() error {
	var out []byte
	var err error
	for _, locale := range []string{"--locale=C.UTF-8", "--no-locale"} {
		cmd := s.command("initdb", "-D", s.dataDir(), "-U", superuser, "--auth=trust",
			"--encoding=UTF8", locale, "--no-sync")
		out, err = cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		_ = os.RemoveAll(s.dataDir()) // a half-made cluster fails the retry
	}
	return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
}

// start runs postgres on a free port and waits until it takes connections.
func (s *Server) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	if s.log == nil {
		if s.log, err = os.Create(filepath.Join(s.root, "postgres.log")); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	args := []string{
		"-D", s.dataDir(),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.root, // never the system's /var/run/postgresql
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
		"-c", "max_connections=200",
		"-c", "track_commit_timestamp=on", // SpiceDB's Watch on its PostgreSQL datastore needs it
		"-c", "log_min_messages=warning",
	}
	for _, setting := range s.settings {
		args = append(args, "-c", setting)
	}
	cmd := s.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)

	conn, err := s.waitReady()
	if err != nil {
		s.kill()
		s.cmd = nil
		return err
	}
	s.admin = conn
	return nil
}

// waitReady connects until the server answers, the server exits, or
// startTimeout passes: a bounded poll, since nothing announces readiness.
func (s *Server) waitReady() (*pgx.Conn, error) {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL())
		cancel()
		if err == nil {
			return conn, nil
		}
		lastErr = err
		select {
		case <-s.exited:
			return nil, fmt.Errorf("pgtest: %w on port %d: %s", errExited, s.port, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("pgtest: postgres did not take connections within %v: %v\n%s", startTimeout, lastErr, s.logTail())
}

// command builds a server-side command run as the server's user, in its
// temporary directory (the user may not be able to read our working directory).
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C") // messages in English, whatever the host says
	cmd.SysProcAttr = sysProcAttr(s.as)
	return cmd
}

// logTail returns the end of the server log, for errors.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.root, "postgres.log"))
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return "server log:\n" + strings.TrimSpace(string(b))
}

// freePort asks the kernel for a free loopback port. Another process may take
// it before postgres binds it; start retries with a new one when postgres exits.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// identifierPart turns a test name into lower-case letters, digits and '_'.
func identifierPart(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// PID is the postmaster's process id (benchmarks pin it to a CPU and sum its
// processes' CPU time).
func (s *Server) PID() int { return s.cmd.Process.Pid }
