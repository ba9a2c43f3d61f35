package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Field  string `json:"field,omitempty"`
	// Instance identifies this occurrence: urn:trellis:request:<X-Request-Id>.
	Instance string `json:"instance,omitempty"`
}

const problemBase = "https://trellis.dev/problems/"

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Type: problemBase + code, Title: http.StatusText(status), Status: status, Detail: detail, Code: code}
}

// problemFor maps a domain error to its problem document. Internal errors
// are logged and never shown to clients.
func problemFor(err error, log *slog.Logger) *Problem {
	var ve *trellis.ValidationError
	var re *trellis.RuleError
	var ce *trellis.ConflictError
	var ue *trellis.UnavailableError
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	var rl *rateLimitedError
	switch {
	case errors.As(err, &rl):
		return newProblem(http.StatusTooManyRequests, "rate_limited", rl.Error())
	case errors.As(err, &mbe):
		p := newProblem(http.StatusBadRequest, "invalid_argument", "body: request body is larger than 1 MiB")
		p.Field = "body"
		return p
	case errors.As(err, &ve):
		p := newProblem(http.StatusBadRequest, "invalid_argument", ve.Error())
		p.Field = ve.Field
		return p
	case errors.As(err, &re):
		p := newProblem(http.StatusUnprocessableEntity, re.Code, re.Message)
		p.Field = re.Field
		return p
	case errors.As(err, &ce):
		return newProblem(http.StatusConflict, ce.Code, ce.Message)
	case errors.Is(err, trellis.ErrUnauthenticated):
		return newProblem(http.StatusUnauthorized, "unauthenticated", "missing or invalid credentials")
	case errors.Is(err, trellis.ErrForbidden):
		return newProblem(http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, trellis.ErrNotFound):
		return newProblem(http.StatusNotFound, "not_found", "not found")
	case errors.Is(err, trellis.ErrConflict):
		return newProblem(http.StatusConflict, "conflict", err.Error())
	case errors.As(err, &ue): // a bound on work, whose reason the client may read
		return newProblem(http.StatusServiceUnavailable, ue.Code, ue.Message)
	case errors.Is(err, trellis.ErrUnavailable):
		log.Warn("unavailable", "err", err)
		return newProblem(http.StatusServiceUnavailable, "unavailable", "the authorization engine or a store is unavailable; retry later")
	case errors.As(err, &he):
		code := strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "_"))
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok {
			msg = s
		}
		return newProblem(he.Code, code, msg)
	}
	log.Error("internal error", "err", err)
	return newProblem(http.StatusInternalServerError, "internal", "internal error")
}

// errorHandler is echo's single HTTPErrorHandler: every error becomes problem+json.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := problemFor(err, requestLogger(log, c))
		if id := c.Response().Header().Get(HeaderRequestID); id != "" {
			p.Instance = "urn:trellis:request:" + id
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		var rl *rateLimitedError
		if errors.As(err, &rl) {
			c.Response().Header().Set("Retry-After", strconv.Itoa(rl.retryAfter))
		}
		if p.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="trellis"`)
		}
		c.Response().WriteHeader(p.Status)
		if c.Request().Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(c.Response()).Encode(p)
	}
}

// bind decodes a JSON body into v; a syntax or type error names the field.
func bind(c echo.Context, v any) error {
	raw, err := readBody(c.Request())
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return trellis.Invalid("body", "a JSON body is required")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		var ve *trellis.ValidationError
		switch {
		case errors.As(err, &ve): // a field type's own UnmarshalJSON named it
			return err
		case errors.As(err, &ute):
			field := ute.Field
			if field == "" {
				field = "body"
			}
			return trellis.Invalid(field, "must be %s, not %s", jsonKind(ute.Type.Kind().String()), ute.Value)
		case errors.As(err, &se) && se.Error() == "unexpected end of JSON input":
			return trellis.Invalid("body", "invalid JSON: unexpected end of input")
		case errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value"):
			return trellis.Invalid("body", "invalid JSON: more than one value")
		case errors.As(err, &se):
			return trellis.Invalid("body", "invalid JSON at offset %d: %v", se.Offset, se)
		}
		// a field type's own UnmarshalJSON failed (a time that is not RFC 3339…):
		// encoding/json does not say which field, so find the top-level one
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return trellis.Invalid(fieldOf(raw, v, err), "must be an RFC 3339 time (e.g. 2030-01-01T00:00:00Z), not %s", pe.Value)
		}
		return trellis.Invalid(fieldOf(raw, v, err), "%v", err)
	}
	return nil
}

// fieldOf names the top-level member of raw whose value alone makes decoding
// into v's type fail with err's message, or "body" when none does. Only
// members named like a field of v's struct are tried (a body of many unknown
// members costs one parse, not one per member).
func fieldOf(raw []byte, v any, err error) string {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return "body"
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return "body"
	}
	st := t.Elem()
	for i := range st.NumField() {
		f := st.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		for member, value := range members {
			if !strings.EqualFold(member, name) { // encoding/json matches names without case
				continue
			}
			one, _ := json.Marshal(map[string]json.RawMessage{member: value})
			if e := json.Unmarshal(one, reflect.New(st).Interface()); e != nil && e.Error() == err.Error() {
				return member
			}
		}
	}
	return "body"
}

// readBody reads a request body whole, at most maxBodyBytes, growing its
// buffer as data arrives (a declared length reserves nothing up front). It is
// the one reader of request bodies, so the one place that bounds them, declared
// or chunked. A body that breaks off or is malformed on the wire is the client's error.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	limit := req.ContentLength // net/http ends a declared body there
	switch {
	case limit > maxBodyBytes:
		return nil, &http.MaxBytesError{Limit: maxBodyBytes}
	case limit < 0: // chunked
		limit = maxBodyBytes + 1
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, limit))
	switch {
	case err == nil && len(raw) > maxBodyBytes:
		return nil, &http.MaxBytesError{Limit: maxBodyBytes}
	case err != nil:
		return nil, trellis.Invalid("body", "the request body could not be read: %v", err)
	case req.ContentLength > 0 && int64(len(raw)) < req.ContentLength:
		return nil, trellis.Invalid("body", "the request body ended before its declared length")
	}
	return raw, nil
}

func jsonKind(k string) string {
	switch k {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint32", "float64":
		return "a number"
	}
	return "a " + k
}
