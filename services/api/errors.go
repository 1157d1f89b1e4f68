package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

// Error codes of the error shape. Clients branch on these, never on messages.
const (
	CodeBadRequest      = "bad_request"   // malformed JSON, wrong content type, bad query
	CodeUnknownField    = "unknown_field" // a JSON field this route does not take
	CodeInvalid         = "invalid"       // a value is malformed (see field)
	CodeConflict        = "conflict"      // a value is taken (see field)
	CodeNotFound        = "not_found"     // no such object or route
	CodeMethod          = "method_not_allowed"
	CodeTooLarge        = "too_large"         // request body over the route's limit
	CodeUnauthenticated = "unauthenticated"   // no or unknown credentials
	CodeBadCredentials  = "bad_credentials"   // wrong user name or password
	CodeForbidden       = "forbidden"         // credentials lack the scope
	CodeCSRF            = "csrf"              // missing or wrong X-CSRF-Token
	CodeTooMany         = "too_many_failures" // this address or account is locked out after failed logins (see Retry-After)
	CodeTooManyStreams  = "too_many_streams"  // the caller has as many event streams open as allowed
	CodeUnavailable     = "unavailable"       // a backend (the supervisor) does not answer
	CodeInternal        = "internal"
)

// ErrorBody is the one error shape every route answers with (see wire.ErrorBody).
type ErrorBody = wire.ErrorBody

// ErrorDetail is one problem of an ErrorBody.
type ErrorDetail = wire.ErrorDetail

// apiError is an error that knows its HTTP status and shape.
type apiError struct {
	status int
	body   ErrorDetail
}

// retryError is an error with a Retry-After (see tooMany).
type retryError struct {
	error
	after time.Duration
}

func (e *retryError) Unwrap() error { return e.error }

func (e *apiError) Error() string { return e.body.Message }

// Errorf makes an error that handlers return (or WriteError writes) with
// status, code and field.
func Errorf(status int, code, field, format string, args ...any) error {
	return &apiError{status: status, body: ErrorDetail{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}}
}

// WriteError writes err in the error shape. Errors made by Errorf keep their
// status; store errors map to 422 (invalid), 409 (conflict) and 404 (not
// found); anything else is a 500 whose message hides internals.
func WriteError(w http.ResponseWriter, err error) {
	ae := toAPIError(err)
	if re := (*retryError)(nil); errors.As(err, &re) && re.after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(re.after.Seconds()))))
	}
	writeJSON(w, ae.status, ErrorBody{Error: ae.body})
}

func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var es store.Errors
	var fe *store.FieldError
	switch {
	case errors.As(err, &es) && len(es) > 0:
		return fieldErrors(es)
	case errors.As(err, &fe):
		return fieldErrors(store.Errors{fe})
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, ErrorDetail{Code: CodeNotFound, Message: err.Error()}}
	case errors.Is(err, store.ErrInvalid):
		return &apiError{http.StatusUnprocessableEntity, ErrorDetail{Code: CodeInvalid, Message: strings.TrimPrefix(err.Error(), "invalid: ")}}
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, ErrorDetail{Code: CodeConflict, Message: err.Error()}}
	}
	return &apiError{http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "internal error: " + err.Error()}}
}

// fieldErrors turns the store's field errors into one response: 409 when
// every problem is a conflict, 422 otherwise.
func fieldErrors(es store.Errors) *apiError {
	status := http.StatusConflict
	var details []ErrorDetail
	for _, e := range es {
		code := CodeConflict
		if !errors.Is(e, store.ErrConflict) {
			code, status = CodeInvalid, http.StatusUnprocessableEntity
		}
		msg := e.Problem
		if e.Host != "" {
			msg = "host " + e.Host + ": " + msg
		}
		details = append(details, ErrorDetail{Code: code, Field: e.Field, Line: e.Line, Message: msg})
	}
	top := details[0]
	if status == http.StatusUnprocessableEntity && top.Code != CodeInvalid {
		for _, d := range details {
			if d.Code == CodeInvalid {
				top = d
				break
			}
		}
	}
	top.Message = strings.TrimSpace(top.Field + ": " + top.Message)
	if top.Line > 0 {
		top.Message = fmt.Sprintf("line %d: %s", top.Line, top.Message)
	}
	if len(details) > 1 {
		top.Message += fmt.Sprintf(" (and %d more problems)", len(details)-1)
		top.Details = details
	}
	return &apiError{status, top}
}

// WriteJSON writes v as indented JSON with status code, uncached; for
// routes mounted from outside the package.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	unixhttp.WriteJSON(w, code, v)
}

// DefaultBodyLimit bounds JSON request bodies.
const DefaultBodyLimit = 1 << 20

// DecodeJSON reads one JSON object from r's body into v: the content type
// must be application/json, unknown fields and trailing data are refused, and
// a body over limit bytes (0: DefaultBodyLimit) is a 413.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, CodeBadRequest, "", "send the body as JSON with Content-Type: application/json")
	}
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err, limit); toAPIError(e).status == http.StatusRequestEntityTooLarge {
				return e
			}
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "", "the body must hold exactly one JSON object")
	}
	return nil
}

// jsonError explains a decoding error in the error shape.
func jsonError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "the body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "", "the body is empty; send a JSON object")
	case errors.As(err, &se):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "", "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		field := te.Field
		return Errorf(http.StatusBadRequest, CodeInvalid, field, "%s: want a JSON %s, got %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Errorf(http.StatusBadRequest, CodeUnknownField, field, "unknown field %q (see /api/v1/openapi.json for the fields this route takes)", field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, CodeBadRequest, "", "malformed JSON: the body ends early")
	}
	return Errorf(http.StatusBadRequest, CodeBadRequest, "", "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	}
	return k
}
