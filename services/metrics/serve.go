package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
)

// Handler serves the registry in the text format. Collection failures are
// logged; the families that worked are still served.
func (r *Registry) Handler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		if err := r.WriteText(req.Context(), w); err != nil && log != nil {
			log.Warn("metrics incomplete", "err", err)
		}
	})
}

// SocketDir is where service processes serve their registries, below the
// run directory.
func SocketDir(runDir string) string { return filepath.Join(runDir, "metrics") }

// SocketPath is the socket of one service's registry.
func SocketPath(runDir, service string) string {
	return filepath.Join(SocketDir(runDir), service+".sock")
}

// ServeUnix serves r at GET /metrics on a Unix socket at path (mode 0600)
// until ctx ends, then removes the socket. A stale socket left by a
// previous run is replaced; any other file at path is an error.
func ServeUnix(ctx context.Context, r *Registry, path string, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the metrics socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("metrics socket %s: a file that is not a socket is in the way: remove it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("metrics socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("metrics socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler(log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err = srv.Serve(ln)
	os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving metrics on %s: %w", path, err)
}

// maxScrape bounds what one source may send.
const maxScrape = 8 << 20

// scrapeUnix fetches one registry served by ServeUnix.
func scrapeUnix(ctx context.Context, path string) ([]byte, error) {
	tr := unixhttp.Transport(path)
	tr.DisableKeepAlives = true
	hc := &http.Client{Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://metrics/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxScrape {
		return nil, fmt.Errorf("more than %d bytes", maxScrape)
	}
	return b, nil
}
