package mgmt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
	"kiln.dev/kiln/ota/system"
	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/backup"
	"kiln.dev/kiln/services/backup/backuphttp"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/firewall"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/iscsi/iscsihttp"
	"kiln.dev/kiln/services/mgmt/otahttp"
	"kiln.dev/kiln/services/netconf"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/nfs/nfshttp"
	"kiln.dev/kiln/services/nfs/roots"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/wol"
)

// tlsDir is where the self-signed certificate is kept.
func tlsDir(stateDir string) string { return filepath.Join(stateDir, "mgmt", "tls") }

// certificate returns the certificate to serve: the operator's
// (api.tls_cert, api.tls_key) or the self-signed one, made on first use
// (created reports that).
func certificate(cfg config.Config, stateDir string) (cert tls.Certificate, created bool, err error) {
	if cfg.API.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLSCert, cfg.API.TLSKey)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("api.tls_cert/api.tls_key: loading %s and %s: %w (check both paths and that the key belongs to the certificate, or remove both to use the self-signed certificate)",
				cfg.API.TLSCert, cfg.API.TLSKey, err)
		}
		return cert, false, nil
	}
	return loadOrCreateCert(tlsDir(stateDir), localSubjects(cfg.Hostname), time.Now())
}

// EnsureCertificate makes the self-signed certificate if it does not exist
// yet and returns the SHA-256 fingerprint (colon-separated hex) of the
// certificate mgmt serves. PID 1 calls it before starting services so the
// console can show the fingerprint operators compare on first connect.
func EnsureCertificate(cfg config.Config, stateDir string) (fp string, created bool, err error) {
	cert, created, err := certificate(cfg, stateDir)
	if err != nil {
		return "", false, err
	}
	return fingerprint(cert), created, nil
}

// newAPI builds the operator API served over HTTPS. Routes owned by other
// packages (the OTA bundle upload, roll back, the network status, iSCSI
// volumes) are added here with a.Mount,
// so they get the API's authentication and CSRF checks and mgmt's tests
// enumerate them with every other route.
func newAPI(ctx context.Context, env svc.Env, db *store.Store, fp string, log *slog.Logger) (*api.Server, *orchestrator.Orchestrator, error) {
	orch := newOrchestrator(env, db, log)
	a, err := api.New(ctx, api.Options{
		Vetting:     orch,
		Store:       db,
		Supervisor:  supervisorapi.NewClient(supervisorapi.SocketPath(env.RunDir)),
		Config:      env.Config,
		StateDir:    env.StateDir,
		Banner:      firewallBanner{fw: firewall.New(-1), log: log},
		Fingerprint: fp,
		Version:     env.Version,
		Logger:      log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the API: %w", err)
	}
	ota := otahttp.ForAppliance(env.StateDir, env.RunDir, env.Config.Update.BootTries(), log)
	ota.Mount(a) // update status, push, rollback
	mountMetrics(a, env, db, ota.Slots, log)
	// Links, leases, the firewall's ruleset and a pending network trial.
	a.Mount("GET /api/v1/network", api.ScopeRead, netconf.StatusHandler(env.RunDir))
	// iSCSI volumes and CHAP; without provisioning.domain they answer 503 saying so.
	vols, why := iscsi.OpenManager(ctx, db, env.StateDir, env.Config.Provisioning.Domain, time.Now())
	if vols != nil {
		vols.Reserve = env.Config.Provisioning.ISCSI
	}
	(&iscsihttp.Handler{Manager: vols, Unavailable: why, Log: log}).Mount(a)
	// Root images of diskless machines (files below <state>/nfs).
	(&nfshttp.Handler{Roots: &roots.Manager{Store: db, Layout: nfs.LayoutOf(env.StateDir)},
		Config: env.Config.Provisioning, StateDir: env.StateDir, Log: log}).Mount(a)
	(&backuphttp.Handler{Source: backupSource(env, db), Dir: backupDir(env), Log: log}).Mount(a)
	return a, orch, nil
}

// backupSource is what a backup taken by mgmt holds: its database, state
// directory and config file.
func backupSource(env svc.Env, db *store.Store) func(time.Time) backup.Source {
	return func(now time.Time) backup.Source {
		return backup.Source{StateDir: env.StateDir, Store: db, ConfigFile: env.ConfigFile,
			Version: env.Version, Hostname: env.Config.Hostname, Now: now}
	}
}

func backupDir(env svc.Env) string { return filepath.Join(env.StateDir, backup.BackupDirName) }

// backupSchedule returns the scheduled backups of backup.every, or nil
// when they are off.
func backupSchedule(env svc.Env, db *store.Store, log *slog.Logger) (*backup.Schedule, error) {
	b := env.Config.Backup
	if b.Every == 0 {
		return nil, nil
	}
	key, err := backup.ParseKeyFile([]byte(b.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("backup.public_key: %w", err)
	}
	return &backup.Schedule{Every: b.Every, Keep: b.Kept(), Key: key, Dir: backupDir(env), ID: system.Identity(),
		PushURL: b.PushURL, Source: backupSource(env, db), Log: log.With("job", "backup"), Now: time.Now}, nil
}

// newOrchestrator returns the vetting orchestrator mgmt drives: it wakes
// hosts with magic packets to the broadcast address of every provisioning
// subnet and sends notifications.
func newOrchestrator(env svc.Env, db *store.Store, log *slog.Logger) *orchestrator.Orchestrator {
	orch := orchestrator.New(db, env.Config.Vetting, env.StateDir, log)
	var targets []netip.AddrPort
	for _, sn := range env.Config.Provisioning.Subnets {
		if b, err := wol.Broadcast(sn.Prefix()); err == nil {
			targets = append(targets, netip.AddrPortFrom(b, wol.Port))
		}
	}
	orch.WoL = func(ctx context.Context, mac string) error { return wol.Send(ctx, mac, targets) }
	orch.Notify = notifier
	host, port := env.Config.Hostname, env.Config.Management.HTTPSPort
	orch.ReportURL = func(id int64) string {
		if port == 0 {
			return ""
		}
		base := "https://" + host
		if port != 443 {
			base += ":" + strconv.Itoa(port)
		}
		return fmt.Sprintf("%s/api/v1/vetting/runs/%d/report.html", base, id)
	}
	return orch
}

// tickEvery is how often the orchestrator wakes hosts, times runs out and
// delivers notifications; pruneEvery how often retention applies.
const (
	tickEvery  = 2 * time.Second
	pruneEvery = time.Hour
)

// runOrchestrator ticks orch until ctx ends.
func runOrchestrator(ctx context.Context, orch *orchestrator.Orchestrator, log *slog.Logger) {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		prune := time.Since(lastPrune) > pruneEvery
		if err := orch.Tick(ctx, prune); err != nil && ctx.Err() == nil {
			log.Warn("vetting orchestrator", "err", err)
		}
		if prune {
			lastPrune = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// firewallBanner adds repeated login failures to the firewall's ban set.
type firewallBanner struct {
	fw  firewall.Banner
	log *slog.Logger
}

func (b firewallBanner) Ban(addr netip.Addr, d time.Duration) {
	if addr.IsLoopback() {
		return // never firewall ourselves
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	switch err := b.fw.Ban(ctx, addr, d); {
	case errors.Is(err, firewall.ErrNotActive):
		b.log.Info("not banning at the firewall: kiln does not manage this host's firewall", "remote", addr.String())
	case err != nil:
		b.log.Warn("banning at the firewall", "remote", addr.String(), "err", err)
	default:
		b.log.Warn("banned at the firewall", "remote", addr.String(), "for", d)
	}
}
