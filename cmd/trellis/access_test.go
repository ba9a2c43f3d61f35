package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/api"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/history"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store/memory"
)

// TestAccessCommands runs the access review commands against a real server
// (embedded SpiceDB, directory, API over httptest): tables, --json, the key
// from the environment, and problems reported with their field.
func TestAccessCommands(t *testing.T) {
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	schemas := schema.NewManager(eng)
	if _, err := schemas.Bootstrap(ctx, demoAppSchema); err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	dir, err := directory.New(directory.Deps{Store: st, Graph: eng}, directory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := directory.Provider("test")
	org, err := dir.CreateOrganization(ctx, p, directory.CreateOrg{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := dir.CreateUser(ctx, p, directory.CreateUser{Email: "ann@acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dir.PutMember(ctx, p, org.ID, u.ID, directory.PutMember{Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	if err := (&history.Recorder{Graph: eng, Store: st}).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{Engine: eng, Schemas: schemas, Actors: engine.ImpersonationGate{Engine: eng}, Directory: dir, AdminKey: "cli-key"}))
	defer srv.Close()
	t.Setenv("TRELLIS_API_KEY", "cli-key")
	run := func(args ...string) (string, error) {
		cmd := rootCmd()
		var b bytes.Buffer
		cmd.SetOut(&b)
		cmd.SetArgs(append(args, "--url", srv.URL))
		err := cmd.Execute()
		return b.String(), err
	}
	res := "organization:" + org.ID
	out, err := run("access", "who-can", res, "manage")
	if err != nil || !strings.Contains(out, "user:"+u.ID) || !strings.Contains(out, "direct: "+res+"#admin@user:"+u.ID) {
		t.Fatalf("who-can: %v\n%s", err, out)
	}
	out, err = run("access", "who-can", res, "manage", "--json")
	var page struct{ Users []struct{ User string } }
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Users) != 1 {
		t.Fatalf("who-can --json: %v\n%s", err, out)
	}
	if out, err = run("access", "user", u.ID); err != nil || !strings.Contains(out, "role admin") || !strings.Contains(out, "manage_members") {
		t.Fatalf("user: %v\n%s", err, out)
	}
	change := filepath.Join(t.TempDir(), "change.json")
	os.WriteFile(change, []byte(`{"updates":[{"operation":"delete","relationship":{"resource":"`+res+`","relation":"admin","subject":"user:`+u.ID+`"}}]}`), 0o600)
	if out, err = run("access", "blast-radius", "-f", change); err != nil || !hasRow(out, "loses", "user:"+u.ID, "manage", res) {
		t.Fatalf("blast-radius: %v\n%s", err, out)
	}
	if out, err = run("access", "at", res, "manage", time.Now().UTC().Format(time.RFC3339Nano), "--subject", "user:"+u.ID); err != nil || !strings.Contains(out, "true") {
		t.Fatalf("at: %v\n%s", err, out)
	}
	if _, err = run("access", "who-can", "not a ref", "manage"); err == nil || !strings.Contains(err.Error(), "(resource)") {
		t.Fatalf("a bad resource: %v", err)
	}
	t.Setenv("TRELLIS_API_KEY", "wrong")
	if _, err = run("access", "who-can", res, "manage"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong key: %v", err)
	}
}

// hasRow reports whether a table line holds exactly these fields.
func hasRow(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}
