package scim

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
)

// Error is a SCIM error (RFC 7644 §3.12): its status is sent as a string.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string { return e.Detail }

func errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func (e *Error) body() map[string]any {
	out := map[string]any{"schemas": []string{schemaError}, "status": fmt.Sprint(e.Status), "detail": e.Detail}
	if e.ScimType != "" {
		out["scimType"] = e.ScimType
	}
	return out
}

// asError translates a directory error into a SCIM one, once; anything
// unexpected is 500 without its text.
func asError(err error) *Error {
	var se *Error
	var ve *trellis.ValidationError
	var ce *trellis.ConflictError
	var re *trellis.RuleError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, directory.ErrSCIMVersion):
		return errorf(http.StatusPreconditionFailed, "", "%s", err.Error())
	case errors.As(err, &ve):
		return errorf(http.StatusBadRequest, "invalidValue", "%s", ve.Error())
	case errors.As(err, &ce) && ce.Code == "uniqueness":
		return errorf(http.StatusConflict, "uniqueness", "%s", ce.Message)
	case errors.Is(err, trellis.ErrConflict):
		return errorf(http.StatusConflict, "", "%s", err.Error())
	case errors.As(err, &re):
		return errorf(http.StatusBadRequest, "invalidValue", "%s", re.Message)
	case errors.Is(err, trellis.ErrNotFound):
		return errorf(http.StatusNotFound, "", "%s", err.Error())
	case errors.Is(err, trellis.ErrUnauthenticated):
		return errorf(http.StatusUnauthorized, "", "%s", err.Error())
	case errors.Is(err, trellis.ErrForbidden):
		return errorf(http.StatusForbidden, "", "%s", err.Error())
	case errors.Is(err, trellis.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "", "the service is unavailable; retry later")
	}
	return errorf(http.StatusInternalServerError, "", "internal error")
}
