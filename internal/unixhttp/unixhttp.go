// Package unixhttp carries kiln's local control APIs (the supervisor's,
// netconf's, the metrics registries') as HTTP over unix sockets, and writes
// the JSON replies of those and of kiln's other HTTP handlers.
package unixhttp

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
)

// Transport dials the unix socket at path for every request, whatever host
// the request's URL names (use one that says which service it is, e.g.
// http://supervisor/v1/status).
func Transport(path string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
}

// Client returns an HTTP client of the socket at path.
func Client(path string) *http.Client { return &http.Client{Transport: Transport(path)} }

// WriteJSON replies with status code and v as indented JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
