package schema

import (
	"reflect"
	"sort"
	"testing"
)

func TestRestrictingRelations(t *testing.T) {
	app := `
definition document {
	relation org: organization
	relation viewer: user | group#member
	relation banned: user | group#member
	relation blocked_org: organization
	permission edit = org->manage
	permission view = ((edit + viewer) - banned) - blocked_org->access
}`
	got, err := Restricting(SystemText + app)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, want := range []string{
		"organization#suspended", "organization#lineage", "organization#is_suspended", // the system's suspension (inherited through lineage)
		"document#banned", "group#member", // an app exclusion and the subject set it admits
		"document#blocked_org", "organization#access", "organization#member", // an arrow on the subtracted side, nested
	} {
		if !got[want] {
			t.Errorf("%s is not restricting; got %v", want, keys)
		}
	}
	// (organization#admin is restricting here: blocked_org->access subtracts administrators too)
	for _, grants := range []string{"document#viewer", "document#org", "document#edit"} {
		if got[grants] {
			t.Errorf("%s only grants, yet is listed as restricting", grants)
		}
	}
	sys, err := Restricting(SystemText)
	if err != nil {
		t.Fatal(err)
	}
	var sysKeys []string
	for k := range sys {
		sysKeys = append(sysKeys, k)
	}
	sort.Strings(sysKeys)
	if want := []string{"organization#is_suspended", "organization#lineage", "organization#suspended"}; !reflect.DeepEqual(sysKeys, want) {
		t.Errorf("the system schema's restricting relations: %v, want %v", sysKeys, want)
	}
}
