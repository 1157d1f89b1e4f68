package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// OpenAPI returns the OpenAPI 3.1 description of every route, made from the
// route table itself so it cannot drift from what the server does.
func (s *Server) OpenAPI() []byte {
	g := &schemaGen{schemas: map[string]any{}}
	errRef := g.schema(reflect.TypeFor[ErrorBody]())
	paths := map[string]map[string]any{}
	for _, rt := range s.Routes() {
		op := map[string]any{
			"summary":      rt.Summary,
			"operationId":  operationID(rt),
			"x-kiln-scope": string(rt.Scope),
		}
		if rt.Self {
			op["x-kiln-self"] = true
		}
		if rt.Credentials {
			op["x-kiln-credentials"] = true
		}
		if rt.Scope == ScopePublic {
			op["security"] = []any{}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.Query {
			name, desc, _ := strings.Cut(q, ": ")
			params = append(params, map[string]any{"name": name, "in": "query", "description": desc, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch {
		case rt.Request != nil:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Request))}}}
		case rt.RawRequest != "":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{rt.RawRequest: map[string]any{}}}
		}
		status := rt.Status
		if status == 0 {
			status = http.StatusOK
		}
		ok := map[string]any{"description": http.StatusText(status)}
		switch {
		case rt.Response != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Response))}}
		case rt.RawResponse != "":
			ok["content"] = map[string]any{rt.RawResponse: map[string]any{}}
		}
		op["responses"] = map[string]any{
			strconv.Itoa(status): ok,
			"default": map[string]any{"description": "An error in the one error shape",
				"content": map[string]any{"application/json": map[string]any{"schema": errRef}}},
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "kiln operator API",
			"version":     "1",
			"description": "The appliance's JSON API. Browsers log in with POST /api/v1/session (cookie + X-CSRF-Token on mutating requests); scripts send an API token as Authorization: Bearer. x-kiln-scope is the role a route needs (read < write < admin); x-kiln-self routes are also open to any browser session for its own account; x-kiln-credentials routes (passwords, accounts, tokens, SSH keys) need a logged-in user, never an anonymous caller of api.trusted_networks. Every error is {\"error\":{\"code\",\"message\",\"field\"}}. See docs/api.md.",
		},
		"security": []any{map[string]any{"session": []any{}}, map[string]any{"token": []any{}}},
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"session": map[string]any{"type": "apiKey", "in": "cookie", "name": SessionCookie},
				"token":   map[string]any{"type": "http", "scheme": "bearer", "description": "An API token (" + TokenPrefix + "…) from POST /api/v1/tokens or kiln login"},
			},
			"schemas": g.schemas,
		},
		"paths": paths,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // only maps, slices and strings
	}
	return append(b, '\n')
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)(?:\.\.\.)?\}`)

// operationID is e.g. "get_hosts_name_events".
func operationID(rt Route) string {
	p := strings.TrimPrefix(rt.Path, "/api/v1/")
	p = strings.NewReplacer("{", "", "}", "", "/", "_", "-", "_", ".", "_").Replace(p)
	return strings.ToLower(rt.Method) + "_" + p
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.OpenAPI())
}

// schemaGen turns Go types into JSON Schemas; named structs go to
// components/schemas.
type schemaGen struct {
	schemas map[string]any
}

func schemaName(t reflect.Type) string {
	n := strings.TrimSuffix(t.Name(), "JSON")
	r := []rune(n)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := schemaName(t)
		if _, ok := g.schemas[name]; !ok {
			g.schemas[name] = map[string]any{} // placeholder against recursion
			props, required := map[string]any{}, []string{}
			g.fields(t, props, &required)
			sch := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
			if len(required) > 0 {
				sch["required"] = required
			}
			g.schemas[name] = sch
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// fields adds t's JSON fields (embedded structs flattened, as encoding/json does).
func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required)
			continue
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omit") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}
