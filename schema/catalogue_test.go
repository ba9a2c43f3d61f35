package schema

import (
	"slices"
	"testing"
)

func TestRolePermissionsComeFromTheRoleDefinition(t *testing.T) {
	got := RolePermissions()
	want := []string{"access", "manage", "manage_billing", "manage_branding", "manage_members", "manage_roles", "manage_scim", "manage_sso", "view_audit"}
	if !slices.Equal(got, want) {
		t.Fatalf("RolePermissions() = %v, want %v", got, want)
	}
	// every catalogue entry is a permission of organization, so a role can be checked there
	org := systemDefs["organization"]
	for _, p := range got {
		found := false
		for _, r := range org.GetRelation() {
			if r.GetName() == p && r.GetUsersetRewrite() != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("catalogue permission %q is not a permission of organization", p)
		}
	}
}

func TestDefinitions(t *testing.T) {
	defs, err := Definitions(SystemText + "\ndefinition document {\n\trelation org: organization\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(defs, "document") || !slices.Contains(defs, "organization") || !slices.IsSorted(defs) {
		t.Fatalf("Definitions = %v", defs)
	}
	if _, err := Definitions("definition {"); err == nil {
		t.Fatal("Definitions accepted a broken schema")
	}
}
