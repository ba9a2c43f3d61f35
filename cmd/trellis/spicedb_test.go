package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
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
		{[]string{"serve", "--grpc-preshared-key", "k", "--http-enabled", "--http-addr", ""}, "--http-addr"},
		{[]string{"migrate", "head"}, "--datastore-engine postgres"},
		{[]string{"migrate", "tail", "--datastore-engine", "postgres", "--datastore-conn-uri", "postgres://x"}, "only `migrate head`"},
	} {
		if err := run(context.Background(), &syncBuffer{}, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("spicedb %v: %v, want an error naming %s", c.args, err, c.want)
		}
	}

	t.Setenv("SPICEDB_GRPC_PRESHARED_KEY", "spicedb-test-key")
	m, stop := serveSpicedb(t, spicedbBanner, "serve", "--grpc-addr", "127.0.0.1:0")
	addr := m[1]
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
	if err := stop(); err != nil {
		t.Errorf("spicedb serve after its context ended: %v", err)
	}
}

// serveSpicedb runs `trellis spicedb args...` in process until its output
// matches banner, and returns the match and a function that ends the command
// and returns its error.
func serveSpicedb(t *testing.T, banner *regexp.Regexp, args ...string) ([]string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := rootCmd()
		cmd.SetArgs(append([]string{"spicedb"}, args...))
		cmd.SetOut(out)
		done <- cmd.ExecuteContext(ctx)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if m := banner.FindStringSubmatch(out.String()); m != nil {
			return m, func() error { cancel(); return <-done }
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("spicedb %v ended before it served: %v\n%s", args, err, out.String())
		case <-time.After(20 * time.Millisecond): // polling the banner
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("spicedb %v: no banner matching %s within 30 s:\n%s", args, banner, out.String())
		}
	}
}

var spicedbGatewayBanner = regexp.MustCompile(`serving gRPC on \S+ and its HTTP gateway on (\S+), datastore memory`)

// TestSpicedbServeHTTPGateway runs `trellis spicedb serve --http-enabled` (the
// address from SPICEDB_HTTP_ADDR) and uses SpiceDB's REST API over HTTP with
// the preshared key as bearer token: a schema, a relationship, then checks at
// least as fresh as the write's token. A request without the key is refused.
func TestSpicedbServeHTTPGateway(t *testing.T) {
	t.Setenv("SPICEDB_HTTP_ADDR", "127.0.0.1:0")
	m, stop := serveSpicedb(t, spicedbGatewayBanner, "serve", "--grpc-addr", "127.0.0.1:0", "--grpc-preshared-key", "gateway-key", "--http-enabled")
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("spicedb serve after its context ended: %v", err)
		}
	}()
	base := "http://" + m[1]
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(path, key, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return resp.StatusCode, raw
	}
	// the gateway's listener opens as the server runs, just after the banner
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: no 200 within 30 s (last: %v)", base, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the listener
	}

	const schema = `{"schema":"definition user {}\ndefinition document {\n\trelation viewer: user\n\tpermission view = viewer\n}"}`
	if code, raw := post("/v1/schema/write", "", schema); code != http.StatusUnauthorized {
		t.Errorf("schema write without the key: %d %s, want 401", code, raw)
	}
	if code, raw := post("/v1/schema/write", "another-key", schema); code == http.StatusOK {
		t.Errorf("schema write with another key: %d %s, want it refused", code, raw)
	}
	if code, raw := post("/v1/schema/write", "gateway-key", schema); code != http.StatusOK {
		t.Fatalf("schema write: %d %s", code, raw)
	}
	code, raw := post("/v1/relationships/write", "gateway-key", `{"updates":[{"operation":"OPERATION_TOUCH","relationship":{`+
		`"resource":{"objectType":"document","objectId":"d1"},"relation":"viewer","subject":{"object":{"objectType":"user","objectId":"u1"}}}}]}`)
	if code != http.StatusOK {
		t.Fatalf("relationships write: %d %s", code, raw)
	}
	var written struct {
		WrittenAt struct {
			Token string `json:"token"`
		} `json:"writtenAt"`
	}
	if err := json.Unmarshal(raw, &written); err != nil || written.WrittenAt.Token == "" {
		t.Fatalf("relationships write answered %s: no writtenAt.token (%v)", raw, err)
	}
	for user, want := range map[string]string{"u1": "PERMISSIONSHIP_HAS_PERMISSION", "u2": "PERMISSIONSHIP_NO_PERMISSION"} {
		code, raw := post("/v1/permissions/check", "gateway-key", `{"consistency":{"atLeastAsFresh":{"token":"`+written.WrittenAt.Token+`"}},`+
			`"resource":{"objectType":"document","objectId":"d1"},"permission":"view","subject":{"object":{"objectType":"user","objectId":"`+user+`"}}}`)
		var check struct {
			Permissionship string `json:"permissionship"`
		}
		if code != http.StatusOK || json.Unmarshal(raw, &check) != nil || check.Permissionship != want {
			t.Errorf("check document:d1#view@user:%s: %d %s, want permissionship %s", user, code, raw, want)
		}
	}
}
