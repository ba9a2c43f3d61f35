package federation

import (
	"bytes"
	"slices"
	"testing"

	"github.com/trellis-iam/trellis/store"
)

func TestSealerBindsToKeyAndRow(t *testing.T) {
	s, err := NewSealer(RandomKEK())
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("client-secret"), secretAAD("con_a"))
	if bytes.Contains(sealed, []byte("client-secret")) {
		t.Fatal("the sealed value contains the secret")
	}
	if got, err := s.Open(sealed, secretAAD("con_a")); err != nil || string(got) != "client-secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, secretAAD("con_b")); err == nil {
		t.Fatal("a secret sealed for one connection opens for another")
	}
	other, _ := NewSealer(RandomKEK())
	if _, err := other.Open(sealed, secretAAD("con_a")); err == nil {
		t.Fatal("a secret opens under another key")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open(sealed, secretAAD("con_a")); err == nil {
		t.Fatal("a tampered secret opens")
	}
	if _, err := s.Open([]byte{1, 2}, nil); err == nil {
		t.Fatal("a truncated value opens")
	}
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key is accepted")
	}
}

func TestMapRoles(t *testing.T) {
	rules := []store.RoleRule{
		{Claim: "groups", Value: "admins", Roles: []string{"admin"}},
		{Claim: "dept", Value: "hr", Roles: []string{"people-manager", "admin"}},
	}
	for _, tc := range []struct {
		claims map[string]any
		want   []string
	}{
		{map[string]any{"groups": []any{"staff", "admins"}}, []string{"admin"}},
		{map[string]any{"groups": "admins", "dept": "hr"}, []string{"admin", "people-manager"}},
		{map[string]any{"groups": []any{"Admins"}}, nil}, // exact match only
		{map[string]any{"groups": []any{1, true}}, nil},
		{nil, nil},
	} {
		if got := mapRoles(rules, tc.claims); !slices.Equal(got, tc.want) {
			t.Errorf("mapRoles(%v) = %v, want %v", tc.claims, got, tc.want)
		}
	}
}

func TestValidIssuer(t *testing.T) {
	for _, ok := range []string{"https://idp.example.com", "https://idp.example.com/tenant/v2", "http://127.0.0.1:8000", "http://localhost:9"} {
		if _, err := validIssuer(ok); err != nil {
			t.Errorf("validIssuer(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "idp.example.com", "http://idp.example.com", "https://u:p@idp.example.com", "https://idp.example.com?x=1", "https://idp.example.com#f", "javascript:alert(1)", "ftp://idp.example.com"} {
		if _, err := validIssuer(bad); err == nil {
			t.Errorf("validIssuer(%q) accepted", bad)
		}
	}
}

// FuzzParseIdPMetadata: arbitrary metadata never panics, and what it accepts
// names an entity and an IdP with a signing certificate.
func FuzzParseIdPMetadata(f *testing.F) {
	f.Add(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"><IDPSSODescriptor><SingleSignOnService Binding="b" Location="https://x"/></IDPSSODescriptor></EntityDescriptor>`)
	f.Add("<nope/>")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		ed, err := parseIdPMetadata(raw)
		if err == nil && (ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0) {
			t.Fatalf("accepted metadata without an entity or IdP: %q", raw)
		}
	})
}
