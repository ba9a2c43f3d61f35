package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// The contract: every response an API test receives through the harness is
// validated against api/openapi.json (kin-openapi), its status included, so
// a field drifting from the document fails the test that saw it. Objects of
// the document are read strictly here: a field the document does not name
// is a failure too (additionalProperties: false wherever the document lists
// properties and says nothing else).
var contract struct {
	once   sync.Once
	router routers.Router
	err    error
}

func contractRouter(t testing.TB) routers.Router {
	contract.once.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder)
		raw, err := os.ReadFile("openapi.json")
		if err != nil {
			contract.err = err
			return
		}
		doc, err := openapi3.NewLoader().LoadFromData(raw)
		if err != nil {
			contract.err = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			contract.err = err
			return
		}
		for _, s := range doc.Components.Schemas {
			strict(s.Value, map[*openapi3.Schema]bool{})
		}
		contract.router, contract.err = legacy.NewRouter(doc)
	})
	if contract.err != nil {
		t.Fatalf("load api/openapi.json for validation: %v", contract.err)
	}
	return contract.router
}

// strict closes every object schema that lists properties.
func strict(s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		no := false
		s.AdditionalProperties.Has = &no
	}
	for _, p := range s.Properties {
		strict(p.Value, seen)
	}
	if s.Items != nil {
		strict(s.Items.Value, seen)
	}
	for _, list := range [][]*openapi3.SchemaRef{s.OneOf, s.AnyOf} {
		for _, x := range list {
			strict(x.Value, seen)
		}
	}
}

// checkContract validates one response to req against the document.
func checkContract(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := contractError(t, req, status, header, body); err != nil {
		t.Errorf("contract: %s %s → %d does not match api/openapi.json: %v\nbody: %.600s", req.Method, req.URL.Path, status, err, body)
	}
}

// contractError is the validation's verdict. Requests to paths the document
// does not describe (tests of unknown routes) are not checked.
func contractError(t testing.TB, req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := contractRouter(t).FindRoute(req)
	if err != nil {
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// The validation fails a drifting field, a missing one and an undocumented
// status, and passes the document's own shape.
func TestContractCatchesDrift(t *testing.T) {
	req, _ := http.NewRequest("POST", "http://trellis.test/v1/check", nil)
	js := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		status int
		body   string
		ok     bool
	}{
		{200, `{"allowed":true,"permissionship":"HAS_PERMISSION","checkedAt":"t1","cached":false}`, true},
		{200, `{"allowed":true,"permissionship":"HAS_PERMISSION","checkedAt":"t1","cached":false,"extra":1}`, false},
		{200, `{"allowed":true,"permissionship":"HAS_PERMISSION","cached":false}`, false},
		{200, `{"allowed":"yes","permissionship":"HAS_PERMISSION","checkedAt":"t1","cached":false}`, false},
		{418, `{}`, false},
	} {
		if err := contractError(t, req, c.status, js, []byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%d %s: error %v, want ok=%v", c.status, c.body, err, c.ok)
		}
	}
}

// ndjsonDecoder reads newline-delimited JSON (the audit export): every line
// must be one JSON object; the body is then checked as the string the
// document describes.
func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	for i, line := range bytes.Split(bytes.TrimRight(raw, "\n"), []byte("\n")) {
		var obj map[string]any
		if err := json.Unmarshal(line, &obj); err != nil {
			return nil, fmt.Errorf("line %d is not a JSON object: %w", i+1, err)
		}
	}
	return string(raw), nil
}
