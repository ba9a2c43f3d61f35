package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

var spicedbBanner = regexp.MustCompile(`serving gRPC on (\S+), datastore memory`)

// TestSpicedbServe runs `trellis spicedb serve` on memdb in process: the key
// comes from SPICEDB_GRPC_PRESHARED_KEY as for `spicedb serve`, a client with
// it is served and one without is refused, and the command returns cleanly
// when its context ends. Bad settings are refused naming the flag.
func TestSpicedbServe(t *testing.T) {
	run := func(ctx context.Context, out *syncBuffer, args ...string) error {
		cmd := rootCmd()
		cmd.SetArgs(append([]string{"spicedb"}, args...))
		cmd.SetOut(out)
		return cmd.ExecuteContext(ctx)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve"}, "--grpc-preshared-key"},
		{[]string{"serve", "--grpc-preshared-key", "k", "--datastore-engine", "cassandra"}, "--datastore-engine"},
		{[]string{"serve", "--grpc-preshared-key", "k", "--datastore-engine", "postgres"}, "--datastore-conn-uri"},
		{[]string{"serve", "--grpc-preshared-key", "k", "--datastore-revision-quantization-interval", "0s"}, "--datastore-revision-quantization-interval"},
		{[]string{"migrate", "head"}, "--datastore-engine postgres"},
		{[]string{"migrate", "tail", "--datastore-engine", "postgres", "--datastore-conn-uri", "postgres://x"}, "only `migrate head`"},
	} {
		if err := run(context.Background(), &syncBuffer{}, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("spicedb %v: %v, want an error naming %s", c.args, err, c.want)
		}
	}

	t.Setenv("SPICEDB_GRPC_PRESHARED_KEY", "spicedb-test-key")
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, out, "serve", "--grpc-addr", "127.0.0.1:0") }()
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		if m := spicedbBanner.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("spicedb serve ended before it served: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond): // polling the banner
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no banner within 30 s:\n%s", out.String())
		}
	}
	r, err := engine.Dial(context.Background(), engine.RemoteConfig{Endpoint: addr, Token: "spicedb-test-key", Insecure: true})
	if err != nil {
		t.Errorf("dialing with the key from SPICEDB_GRPC_PRESHARED_KEY: %v", err)
	} else {
		_ = r.Close()
	}
	if r, err := engine.Dial(context.Background(), engine.RemoteConfig{Endpoint: addr, Token: "another-key", Insecure: true}); err == nil {
		_ = r.Close()
		t.Errorf("a client with another key was served")
	} else if !strings.Contains(err.Error(), "refused the token") {
		t.Errorf("a client with another key: %v, want the token refused", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("spicedb serve after its context ended: %v", err)
	}
}
