package httpboot

import (
	"io"
	"net/http"
	"strings"

	"kiln.dev/kiln/services/metrics"
)

// metered counts requests and body bytes by kind of path and status class
// around next; with a nil registry it is next itself.
func metered(reg *metrics.Registry, next http.Handler) http.Handler {
	if reg == nil {
		return next
	}
	requests := reg.CounterVec("kiln_httpboot_requests_total", "HTTP boot requests by kind (script, file, ipxe, vet_agent, other) and status class (2xx, 3xx, 4xx, 5xx).", "kind", "code")
	sent := reg.CounterVec("kiln_httpboot_sent_bytes_total", "HTTP boot response body bytes sent, by kind.", "kind")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := pathKind(r.URL.Path)
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(cw, r)
		requests.With(kind, statusClass(cw.code)).Inc()
		sent.With(kind).Add(uint64(cw.n))
	})
}

// pathKind names the part of the server a path belongs to (a fixed set, so
// clients cannot grow the series).
func pathKind(p string) string {
	switch {
	case strings.HasPrefix(p, "/boot/"):
		return "script"
	case strings.HasPrefix(p, "/files/"):
		return "file"
	case strings.HasPrefix(p, "/ipxe/"):
		return "ipxe"
	case strings.HasPrefix(p, "/vet/v1/"):
		return "vet_agent"
	}
	return "other"
}

func statusClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}

// countingWriter records the status and counts body bytes. It passes
// ReadFrom through, so http.ServeContent still sends files with sendfile.
type countingWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	n           int64
}

func (c *countingWriter) WriteHeader(code int) {
	if !c.wroteHeader {
		c.code, c.wroteHeader = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.wroteHeader = true
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	c.wroteHeader = true
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// Flush lets streamed answers (the agents' protocol) flush.
func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
