package engine

import "testing"

func TestWithStatementCache(t *testing.T) {
	for _, tc := range []struct{ datastore, uri, want string }{
		{"postgres", "postgres://u@h/db", "postgres://u@h/db?default_query_exec_mode=cache_statement"},
		{"postgres", "postgresql://u@h/db?sslmode=disable", "postgresql://u@h/db?sslmode=disable&default_query_exec_mode=cache_statement"},
		{"postgres", "host=h dbname=db", "host=h dbname=db default_query_exec_mode=cache_statement"},
		// an operator's own choice (PgBouncer in transaction mode needs exec) is kept
		{"postgres", "postgres://u@h/db?default_query_exec_mode=exec", "postgres://u@h/db?default_query_exec_mode=exec"},
		{"memory", "", ""},
		{"postgres", "", ""},
	} {
		if got := withStatementCache(tc.datastore, tc.uri); got != tc.want {
			t.Errorf("withStatementCache(%q, %q) = %q, want %q", tc.datastore, tc.uri, got, tc.want)
		}
	}
}
