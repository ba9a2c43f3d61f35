package scim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/trellis-iam/trellis/directory"
)

// Schema URNs.
const (
	schemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	schemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	schemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	schemaError      = "urn:ietf:params:scim:api:messages:2.0:Error"
	schemaList       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	schemaPatch      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	schemaBulkReq    = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
	schemaBulkResp   = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
	schemaSPC        = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaSchema     = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	schemaRT         = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSearch     = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
)

// attr describes one attribute the server keeps: its canonical name, type,
// whether it is multi-valued and its sub-attributes.
type attr struct {
	name  string
	typ   string // string | boolean | complex | reference | dateTime
	multi bool
	sub   []attr
}

func str(name string) attr     { return attr{name: name, typ: "string"} }
func boolean(name string) attr { return attr{name: name, typ: "boolean"} }

func multiComplex(name string, sub ...attr) attr {
	return attr{name: name, typ: "complex", multi: true, sub: sub}
}

var (
	multiSub = []attr{str("value"), str("display"), str("type"), boolean("primary")}

	userAttrs = []attr{
		str("externalId"), str("userName"),
		{name: "name", typ: "complex", sub: []attr{str("formatted"), str("familyName"), str("givenName"), str("middleName"), str("honorificPrefix"), str("honorificSuffix")}},
		str("displayName"), str("nickName"), str("profileUrl"), str("title"), str("userType"),
		str("preferredLanguage"), str("locale"), str("timezone"), boolean("active"),
		multiComplex("emails", multiSub...), multiComplex("phoneNumbers", multiSub...), multiComplex("ims", multiSub...),
		multiComplex("photos", multiSub...),
		multiComplex("addresses", str("formatted"), str("streetAddress"), str("locality"), str("region"), str("postalCode"), str("country"), str("type"), boolean("primary")),
		multiComplex("entitlements", multiSub...), multiComplex("roles", multiSub...), multiComplex("x509Certificates", multiSub...),
	}
	enterpriseAttrs = []attr{
		str("employeeNumber"), str("costCenter"), str("organization"), str("division"), str("department"),
		{name: "manager", typ: "complex", sub: []attr{str("value"), str("$ref"), str("displayName")}},
	}
	groupAttrs = []attr{
		str("externalId"), str("displayName"),
		multiComplex("members", str("value"), str("$ref"), str("display"), str("type")),
	}
	// readOnly attributes: ignored in bodies, refused as PATCH targets
	readOnlyAttrs = []string{"id", "meta", "schemas", "groups"}
)

func find(attrs []attr, name string) (attr, bool) {
	for _, a := range attrs {
		if strings.EqualFold(a.name, name) {
			return a, true
		}
	}
	return attr{}, false
}

// kind is a resource type the server serves.
type kind struct {
	name     string // User | Group
	endpoint string // Users | Groups
	schema   string
	attrs    []attr
}

var (
	users  = kind{name: "User", endpoint: "Users", schema: schemaUser, attrs: userAttrs}
	groups = kind{name: "Group", endpoint: "Groups", schema: schemaGroup, attrs: groupAttrs}
)

// normalize turns a client's representation into the stored one: known
// attributes under their canonical names with checked types (booleans may be
// "True"/"False" strings, as Entra ID sends them), the enterprise extension
// under its URN (users), readOnly and unknown attributes dropped, and the
// password never kept.
func (k kind) normalize(in map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for key, v := range in {
		if k.name == "User" && strings.EqualFold(key, schemaEnterprise) {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "invalidValue", "%s must be an object", schemaEnterprise)
			}
			ext, err := normalizeAttrs(enterpriseAttrs, m, schemaEnterprise+":")
			if err != nil {
				return nil, err
			}
			if len(ext) > 0 {
				out[schemaEnterprise] = ext
			}
			continue
		}
		a, ok := find(k.attrs, key)
		if !ok {
			continue // readOnly (id, meta, schemas, groups), password, or unknown: not kept
		}
		if v == nil {
			continue
		}
		nv, err := coerce(a, v, "")
		if err != nil {
			return nil, err
		}
		out[a.name] = nv
	}
	return out, nil
}

func normalizeAttrs(attrs []attr, in map[string]any, prefix string) (map[string]any, error) {
	out := map[string]any{}
	for key, v := range in {
		a, ok := find(attrs, key)
		if !ok || v == nil {
			continue
		}
		nv, err := coerce(a, v, prefix)
		if err != nil {
			return nil, err
		}
		out[a.name] = nv
	}
	return out, nil
}

// coerce checks v against a, converting what real identity providers send.
func coerce(a attr, v any, prefix string) (any, error) {
	bad := func(want string) error {
		return errorf(http.StatusBadRequest, "invalidValue", "%s%s must be %s", prefix, a.name, want)
	}
	if a.multi {
		list, ok := v.([]any)
		if !ok {
			list = []any{v} // a single value where a list is expected
		}
		out := make([]any, 0, len(list))
		for i, el := range list {
			one := a
			one.multi = false
			nv, err := coerce(one, el, fmt.Sprintf("%s%s[%d].", prefix, a.name, i))
			if err != nil {
				return nil, err
			}
			out = append(out, nv)
		}
		if len(out) > 10000 {
			return nil, bad("at most 10000 values")
		}
		return out, nil
	}
	switch a.typ {
	case "complex":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad("an object")
		}
		return normalizeAttrs(a.sub, m, prefix+a.name+".")
	case "boolean":
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			switch strings.ToLower(b) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, bad("a boolean")
	default:
		switch s := v.(type) {
		case string:
			if len(s) > 2048 {
				return nil, bad("at most 2048 characters")
			}
			return s, nil
		case json.Number:
			return s.String(), nil
		case bool:
			return fmt.Sprint(s), nil
		}
		return nil, bad("a string")
	}
}

// userState derives what the directory needs from a stored user representation.
func userState(doc map[string]any) directory.SCIMUserState {
	st := directory.SCIMUserState{Active: true}
	st.UserName, _ = doc["userName"].(string)
	st.ExternalID, _ = doc["externalId"].(string)
	if a, ok := doc["active"].(bool); ok {
		st.Active = a
	}
	st.DisplayName, _ = doc["displayName"].(string)
	if name, ok := doc["name"].(map[string]any); ok && st.DisplayName == "" {
		if f, _ := name["formatted"].(string); f != "" {
			st.DisplayName = f
		} else {
			g, _ := name["givenName"].(string)
			f, _ := name["familyName"].(string)
			st.DisplayName = strings.TrimSpace(g + " " + f)
		}
	}
	if emails, ok := doc["emails"].([]any); ok {
		pick := func(keep func(m map[string]any) bool) string {
			for _, e := range emails {
				if m, ok := e.(map[string]any); ok && keep(m) {
					if v, _ := m["value"].(string); v != "" {
						return v
					}
				}
			}
			return ""
		}
		st.Email = pick(func(m map[string]any) bool { return m["primary"] == true })
		if st.Email == "" {
			st.Email = pick(func(m map[string]any) bool { t, _ := m["type"].(string); return strings.EqualFold(t, "work") })
		}
		if st.Email == "" {
			st.Email = pick(func(map[string]any) bool { return true })
		}
	}
	return st
}

// groupState derives what the directory needs from a stored group representation.
func groupState(doc map[string]any) (directory.SCIMGroupState, error) {
	var st directory.SCIMGroupState
	st.DisplayName, _ = doc["displayName"].(string)
	st.ExternalID, _ = doc["externalId"].(string)
	if ms, ok := doc["members"].([]any); ok {
		for i, m := range ms {
			mm, _ := m.(map[string]any)
			v, _ := mm["value"].(string)
			if v == "" {
				return st, errorf(http.StatusBadRequest, "invalidValue", "members[%d].value is required", i)
			}
			st.Members = append(st.Members, v)
		}
	}
	return st, nil
}

// render is the representation a client receives: the stored one with id,
// schemas and meta.
func (k kind) render(rec directory.SCIMRecord, base string) (map[string]any, error) {
	doc := map[string]any{}
	if len(rec.Doc) > 0 {
		if err := json.Unmarshal(rec.Doc, &doc); err != nil {
			return nil, fmt.Errorf("stored SCIM %s %s: %w", k.name, rec.ID, err)
		}
	}
	schemas := []any{k.schema}
	if _, ok := doc[schemaEnterprise]; ok {
		schemas = append(schemas, schemaEnterprise)
	}
	if k.name == "Group" {
		if ms, ok := doc["members"].([]any); ok {
			for _, m := range ms {
				if mm, ok := m.(map[string]any); ok {
					if v, _ := mm["value"].(string); strings.HasPrefix(v, "grp_") {
						mm["type"] = "Group"
					} else if mm["type"] == nil {
						mm["type"] = "User"
					}
				}
			}
		}
	}
	doc["schemas"] = schemas
	doc["id"] = rec.ID
	doc["meta"] = map[string]any{
		"resourceType": k.name,
		"created":      rec.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		"lastModified": rec.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		"location":     base + "/" + k.endpoint + "/" + rec.ID,
		"version":      etag(rec.Version),
	}
	return doc, nil
}

func etag(version int64) string { return fmt.Sprintf(`W/"%d"`, version) }
