package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netns"

	"kiln.dev/kiln/services/firewall"
	"kiln.dev/kiln/services/svc"
)

// Timing of the service's re-applies.
const (
	settle   = 300 * time.Millisecond // quiet time after link/address events
	backstop = time.Minute            // re-apply anyway (routes send no events we watch)
)

// Run is the netconf service: it applies the config's network and firewall
// sections, re-applies them whenever links or addresses change, keeps DHCP
// leases, and serves status/try/confirm on <run>/netconf.sock. It reports
// ready after the first apply even when that failed (the error is in the
// status and retried on every link change), so the management API still
// starts and the operator can fix the config.
func Run(ctx context.Context, env svc.Env) error {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sys, err := OpenSystem(netns.None())
	if err != nil {
		return err
	}
	defer sys.Close()
	return serve(ctx, env, sys, firewall.New(-1), resolvConfPath(env.RunDir), log)
}

// serve is Run on a given namespace (tests pass one they created).
func serve(ctx context.Context, env svc.Env, sys *System, fw *firewall.Firewall, resolvConf string, log *slog.Logger) error {
	m := NewManager(ctx, ManagerOptions{
		System:     sys,
		Firewall:   fw,
		ResolvConf: resolvConf,
		Hostname:   env.Config.Hostname,
		Logger:     log,
	})
	g := NewGuard(m.Apply, SystemClock{}, log)
	events, err := sys.Watch(ctx, func(err error) {
		if ctx.Err() == nil {
			log.Warn("link events", "err", err)
		}
	})
	if err != nil {
		return err
	}
	lastErr := ""
	report := func(err error) {
		switch {
		case err == nil && lastErr != "":
			log.Info("network config applied after earlier failures")
			lastErr = ""
		case err != nil && err.Error() != lastErr:
			log.Error("applying the network config; retrying when links change", "err", err)
			lastErr = err.Error()
		}
	}
	_, err = g.Start(ctx, env.Config)
	report(err)

	sock := filepath.Join(env.RunDir, SocketName)
	if err := os.MkdirAll(env.RunDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", env.RunDir, err)
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restricting %s: %w", sock, err)
	}
	srv := &http.Server{Handler: Handler(m, g), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if env.Ready != nil {
		env.Ready()
	}
	tick := time.NewTicker(backstop)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			os.Remove(sock)
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serving %s: %w", sock, err)
		case <-events:
			if !debounce(ctx, events, settle) {
				continue
			}
			_, err := g.Reapply(ctx)
			report(err)
		case <-tick.C:
			_, err := g.Reapply(ctx)
			report(err)
		}
	}
}

// resolvConfPath is the file /etc/resolv.conf links to in the image
// (/run/resolv.conf); on another host kiln does not take over the host's
// resolver and writes <run>/resolv.conf instead.
func resolvConfPath(runDir string) string {
	if t, err := os.Readlink("/etc/resolv.conf"); err == nil && t == "/run/resolv.conf" {
		return t
	}
	return filepath.Join(runDir, "resolv.conf")
}
