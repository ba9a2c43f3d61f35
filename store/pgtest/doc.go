// Package pgtest starts a throwaway PostgreSQL server for tests: initdb into a
// fresh temporary directory, postgres on a free loopback port with durability
// switched off for speed, and one fresh database per test on that shared
// server. It finds the server binaries on PATH or in Debian's
// /usr/lib/postgresql/<version>/bin, and when the tests run as root (as in CI)
// it runs them as the postgres system user, since PostgreSQL refuses root.
//
// Start it once per test binary, in TestMain:
//
//	srv, err := pgtest.StartServer()
//	if errors.Is(err, pgtest.ErrNotInstalled) { ... skip loudly ... }
//	code := m.Run()
//	srv.Stop()
//
// pgtest imports pgx and the standard library only; nothing of Trellis, and
// nothing outside tests may import it.
package pgtest
