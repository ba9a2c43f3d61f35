package main

import (
	"context"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// TestTwoNodesOnOneSpiceDBCluster runs two `trellis serve --spicedb-endpoint`
// nodes against one SpiceDB server on a loopback port: a grant and then a
// revocation made through node A reach node B's check cache (Watch).
func TestTwoNodesOnOneSpiceDBCluster(t *testing.T) {
	ctx := context.Background()
	srv, err := engine.StartServer(ctx, engine.ServerConfig{PresharedKey: "cluster-key"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	node := func(demo bool) string {
		cfg := defaultConfig()
		cfg.Addr, cfg.Demo, cfg.AdminKey = "127.0.0.1:0", demo, "node-key"
		cfg.SpiceDBEndpoint, cfg.SpiceDBToken, cfg.SpiceDBInsecure = srv.Addr(), "cluster-key", true
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if !cfg.Watch {
			t.Fatal("--spicedb-endpoint must turn the Watch on")
		}
		base, _, _, _ := startServe(t, cfg)
		return base
	}
	a := node(true) // loads the schema and demo graph into the cluster
	b := node(false)
	rel := `{"resource":"document:globex-roadmap","relation":"viewer","subject":"user:iris"}`
	check := `{"resource":"document:globex-roadmap","permission":"view","subject":"user:iris"}`
	expect := func(base string, want bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, got := call(t, "POST", base+"/v1/check", "node-key", check)
			if code == 200 && got["allowed"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s: check = %d %v, want allowed=%v", base, code, got, want)
			}
			time.Sleep(20 * time.Millisecond) // polling another node's eventual view; bounded by the deadline
		}
	}
	expect(b, false) // cached on B as a denial
	expect(b, false)
	if code, got := call(t, "POST", a+"/v1/relationships/write", "node-key", `{"updates":[{"operation":"touch","relationship":`+rel+`}]}`); code != 200 {
		t.Fatalf("grant on A: %d %v", code, got)
	}
	expect(a, true)
	expect(b, true) // B's cached denial was invalidated by the Watch event
	if code, got := call(t, "POST", a+"/v1/relationships/write", "node-key", `{"updates":[{"operation":"delete","relationship":`+rel+`}]}`); code != 200 {
		t.Fatalf("revoke on A: %d %v", code, got)
	}
	expect(b, false)
}
