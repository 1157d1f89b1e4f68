// Package mgmt is the management service: HTTPS with a self-signed
// certificate made on first start (kept in <state>/mgmt/tls/) or the
// operator's (api.tls_cert, api.tls_key), an HTTP port that answers GET
// /healthz and redirects everything else to HTTPS, the supervisor's status at
// GET /api/v1/status, and everything else from the operator API and web UI
// (services/api), whose failed-login bans go to the firewall's ban set.
package mgmt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"kiln.dev/kiln/services/internal/httplimit"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// limits bound what one client can hold of the servers: a browser opens
// about six connections and an event stream or two, the CLI one or two.
type limits struct {
	conns httplimit.Conns
	body  httplimit.Body
}

func defaultLimits() limits {
	return limits{
		conns: httplimit.Conns{Total: 1024, PerSource: 64},
		// An update bundle pushed over a slow link still moves far more
		// than 16 KiB/s; a login body is a few hundred bytes.
		body: httplimit.Body{Grace: 10 * time.Second, MinRate: 16 << 10, Idle: time.Minute},
	}
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, env svc.Env) error {
	return run(ctx, env, defaultLimits())
}

func run(ctx context.Context, env svc.Env, lim limits) error {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := env.Config.Management
	h := &handlers{
		log:       log,
		status:    newSupervisorSocket(filepath.Join(env.RunDir, "supervisor.sock")),
		httpsPort: m.HTTPSPort,
	}

	var servers []*http.Server
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var cert tls.Certificate
	var fp string
	if m.HTTPSPort != 0 {
		var created bool
		var err error
		cert, created, err = certificate(env.Config, env.StateDir)
		if err != nil {
			return err
		}
		if created {
			log.Info("generated a self-signed TLS certificate", "dir", tlsDir(env.StateDir))
		}
		fp = fingerprint(cert)
		log.Info("TLS certificate", "sha256", fp, "not_after", cert.Leaf.NotAfter.Format(time.DateOnly))
	}
	db, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer db.Close()
	a, orch, err := newAPI(ctx, env, db, fp, log)
	if err != nil {
		return err
	}
	sched, err := backupSchedule(env, db, log)
	if err != nil {
		return err
	}
	h.rest = a.Handler()

	if m.HTTPSPort != 0 {
		ln, err := listen(m.Listen, m.HTTPSPort, "management.https_port")
		if err != nil {
			return err
		}
		lns = append(lns, httplimit.Listen(ln, lim.conns))
		srv := newServer(h.api(), lim, log)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		servers = append(servers, srv)
	}
	if m.HTTPPort != 0 {
		ln, err := listen(m.Listen, m.HTTPPort, "management.http_port")
		if err != nil {
			return err
		}
		lns = append(lns, httplimit.Listen(ln, lim.conns))
		servers = append(servers, newServer(h.plain(), lim, log))
	}
	for _, srv := range servers {
		srv.RegisterOnShutdown(a.Close) // ends event streams
	}
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String())
	}
	if len(lns) == 0 {
		log.Warn("management.https_port and management.http_port are both 0: nothing to serve")
	}
	if env.Ready != nil {
		env.Ready()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { runOrchestrator(gctx, orch, log); return nil })
	if sched != nil {
		g.Go(func() error { sched.Run(gctx); return nil })
	}
	for i, srv := range servers {
		ln := lns[i]
		g.Go(func() error {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serving %s: %w", ln.Addr(), err)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range servers {
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
		return nil
	})
	err = g.Wait()
	lns = nil // the servers closed them
	log.Info("stopped")
	return err
}

// newServer serves h with deadlines on every phase a client controls:
// headers, body (httplimit: a minimum rate), and keep-alive idling. Responses
// have none: event streams and tunnels last as long as they are used.
func newServer(h http.Handler, lim limits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           httplimit.Handler(h, lim.body),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// listen binds addr:port, with an operator-facing message naming field.
func listen(addr string, port int, field string) (net.Listener, error) {
	hp := net.JoinHostPort(addr, strconv.Itoa(port))
	ln, err := net.Listen("tcp", hp)
	switch {
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("%s: binding %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE: run kiln as root or choose a port of 1024 or more)", field, hp, err)
	case err != nil:
		return nil, fmt.Errorf("%s: binding %s: %w (another program may hold the port: stop it or choose another port)", field, hp, err)
	}
	return ln, nil
}
