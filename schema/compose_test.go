package schema

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/trellis-iam/trellis"
)

func TestComposeHoistsUseAndDropsIdenticalSystemDefinitions(t *testing.T) {
	app := "use expiration\n\ndefinition user {}\n\ndefinition document {\n\trelation viewer: user with expiration\n\tpermission view = viewer\n}\n"
	c, err := Compose(app)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(c.Text, "use expiration"); n != 1 {
		t.Errorf("use expiration appears %d times", n)
	}
	if !strings.HasPrefix(c.Text, "use expiration\n") {
		t.Errorf("use directive is not first")
	}
	if n := strings.Count(c.Text, "definition user {}"); n != 1 {
		t.Errorf("definition user appears %d times", n)
	}
	if problems := c.Check(context.Background()); len(problems) != 0 {
		t.Fatalf("composed schema does not type-check: %v", problems)
	}
}

func TestComposeRefusesChangedSystemDefinition(t *testing.T) {
	_, err := Compose("definition organization {\n\trelation extra: user\n}\n")
	var re *trellis.RuleError
	if !errors.As(err, &re) || re.Code != "system_definition_changed" || !strings.Contains(re.Message, `"organization"`) {
		t.Fatalf("want a system_definition_changed rule error naming organization, got %v", err)
	}
}

func TestValidateReportsAppLines(t *testing.T) {
	app := "definition document {\n\trelation org: organization\n\n\tpermission view = missing\n}\n"
	p := Validate(context.Background(), app)
	if len(p) != 1 || p[0].Line != 4 {
		t.Fatalf("want one problem on line 4, got %+v", p)
	}
	p = Validate(context.Background(), "definition document {\n\trelation org: organization\n\tpermission view = org->\n}\n")
	// the parser stops at the unexpected token: the closing brace on line 4
	if len(p) != 1 || p[0].Line != 4 || p[0].Column != 1 {
		t.Fatalf("want one syntax problem at 4:1, got %+v", p)
	}
}

// FuzzCompose: no app text makes composition or validation panic.
func FuzzCompose(f *testing.F) {
	f.Add("definition document { relation org: organization }")
	f.Add("use expiration\ndefinition user {}\n")
	f.Add("caveat c(x int) { x > 1 }\ndefinition d { relation r: user with c }")
	f.Add("definition user { /* { */ }")
	f.Fuzz(func(t *testing.T, app string) {
		c, err := Compose(app)
		if err != nil {
			return
		}
		if !strings.Contains(c.Text, "definition organization") {
			t.Fatal("composition lost the system schema")
		}
	})
}
