package scim

import (
	"net/http"
	"strings"
)

func static(v map[string]any) handler {
	return func(*request) (reply, error) { return reply{status: http.StatusOK, body: v}, nil }
}

var serviceProviderConfig = map[string]any{
	"schemas":          []string{schemaSPC},
	"documentationUri": "https://github.com/trellis-iam/trellis#scim-provisioning",
	"patch":            map[string]any{"supported": true},
	"bulk":             map[string]any{"supported": true, "maxOperations": MaxBulkOperations, "maxPayloadSize": MaxBodyBytes},
	"filter":           map[string]any{"supported": true, "maxResults": MaxResults},
	"changePassword":   map[string]any{"supported": false},
	"sort":             map[string]any{"supported": true},
	"etag":             map[string]any{"supported": true},
	"authenticationSchemes": []any{map[string]any{
		"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
		"description": "The organization's SCIM token (POST /v1/organizations/{org}/scim/tokens).",
	}},
	"meta": map[string]any{"resourceType": "ServiceProviderConfig"},
}

// schemaDoc describes attrs as RFC 7643 §7 does.
func schemaDoc(id, name string, attrs []attr) map[string]any {
	return map[string]any{
		"schemas": []string{schemaSchema}, "id": id, "name": name, "attributes": attrDocs(attrs),
		"meta": map[string]any{"resourceType": "Schema", "location": "/Schemas/" + id},
	}
}

func attrDocs(attrs []attr) []any {
	out := []any{}
	for _, a := range attrs {
		d := map[string]any{
			"name": a.name, "type": a.typ, "multiValued": a.multi, "required": false,
			"caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none",
		}
		if a.name == "userName" {
			d["required"], d["uniqueness"] = true, "server"
		}
		if len(a.sub) > 0 {
			d["subAttributes"] = attrDocs(a.sub)
		}
		out = append(out, d)
	}
	return out
}

var (
	userSchema       = withGroupsAttr(schemaDoc(schemaUser, "User", userAttrs))
	groupSchema      = schemaDoc(schemaGroup, "Group", groupAttrs)
	enterpriseSchema = schemaDoc(schemaEnterprise, "EnterpriseUser", enterpriseAttrs)
	allSchemas       = []map[string]any{userSchema, groupSchema, enterpriseSchema}
)

func (s *Server) schemas(*request) (reply, error) {
	return listOf(allSchemas), nil
}

func (s *Server) schemaByID(r *request) (reply, error) {
	for _, sc := range allSchemas {
		if strings.EqualFold(sc["id"].(string), r.c.Param("id")) {
			return reply{status: http.StatusOK, body: sc}, nil
		}
	}
	return reply{}, errorf(http.StatusNotFound, "", "no schema %q", r.c.Param("id"))
}

func resourceTypes(base string) []map[string]any {
	return []map[string]any{
		{"schemas": []string{schemaRT}, "id": "User", "name": "User", "endpoint": "/Users", "schema": schemaUser,
			"schemaExtensions": []any{map[string]any{"schema": schemaEnterprise, "required": false}},
			"meta":             map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/User"}},
		{"schemas": []string{schemaRT}, "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": schemaGroup,
			"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/Group"}},
	}
}

func (s *Server) resourceTypes(r *request) (reply, error) {
	return listOf(resourceTypes(r.base)), nil
}

func (s *Server) resourceTypeByID(r *request) (reply, error) {
	for _, rt := range resourceTypes(r.base) {
		if strings.EqualFold(rt["id"].(string), r.c.Param("id")) {
			return reply{status: http.StatusOK, body: rt}, nil
		}
	}
	return reply{}, errorf(http.StatusNotFound, "", "no resource type %q", r.c.Param("id"))
}

func listOf(items []map[string]any) reply {
	res := make([]any, len(items))
	for i, it := range items {
		res[i] = it
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"schemas": []string{schemaList}, "totalResults": len(items), "startIndex": 1, "itemsPerPage": len(items), "Resources": res,
	}}
}

// withGroupsAttr adds the User's read-only, computed groups attribute.
func withGroupsAttr(doc map[string]any) map[string]any {
	sub := func(name, typ string) map[string]any {
		return map[string]any{"name": name, "type": typ, "multiValued": false, "required": false, "caseExact": false,
			"mutability": "readOnly", "returned": "default", "uniqueness": "none"}
	}
	ref := sub("$ref", "reference")
	ref["referenceTypes"] = []string{"Group"}
	doc["attributes"] = append(doc["attributes"].([]any), map[string]any{
		"name": "groups", "type": "complex", "multiValued": true, "required": false, "caseExact": false,
		"mutability": "readOnly", "returned": "default", "uniqueness": "none",
		"subAttributes": []any{sub("value", "string"), ref, sub("display", "string"), sub("type", "string")},
	})
	return doc
}
