package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/store/pgtest"
)

// TestServer starts a server, makes two databases on it, uses them and stops it.
func TestServer(t *testing.T) {
	start := time.Now()
	s := pgtest.Start(t)
	t.Logf("server up in %v on port %d", time.Since(start), s.Port())

	var urls []string
	t.Run("databases", func(t *testing.T) {
		for range 2 {
			start := time.Now()
			url := s.NewDatabase(t)
			t.Logf("database in %v", time.Since(start))
			urls = append(urls, url)
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			var one int
			if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Errorf("SELECT 1: %d, %v", one, err)
			}
			// left open on purpose: the drop at cleanup forces it out
			t.Cleanup(func() { _ = conn.Close(context.Background()) })
		}
		if urls[0] == urls[1] {
			t.Errorf("two databases share a URL: %s", urls[0])
		}
	})
	// the subtest's cleanups dropped its databases
	for _, url := range urls {
		if conn, err := pgx.Connect(t.Context(), url); err == nil {
			_ = conn.Close(t.Context())
			t.Errorf("database %s still exists after its test", url)
		}
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop twice: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, s.URL()); err == nil {
		_ = conn.Close(ctx)
		t.Error("server still answers after Stop")
	}
}
