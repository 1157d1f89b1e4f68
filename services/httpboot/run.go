package httpboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
)

// Run is the HTTP boot service's entry point: scripts from the machine
// database, artifacts from provisioning.http_boot.root (default
// <state>/boot), iPXE binaries from the TFTP root, on
// provisioning.http_boot.listen (default :8080).
func Run(ctx context.Context, env svc.Env) error {
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	o := OptionsFromConfig(env.Config, env.StateDir)
	o.Metrics = env.Metrics
	if env.Config.Provisioning.HTTPBoot.Root == "" {
		if err := os.MkdirAll(o.FilesRoot, 0o755); err != nil {
			return fmt.Errorf("creating the HTTP boot files root: %w", err)
		}
	}
	if _, err := os.Stat(o.IPXERoot); err != nil && env.Config.Provisioning.TFTP.Root == "" {
		// Host mode without the image's iPXE directory: the TFTP service's
		// fallback, if it exists.
		o.IPXERoot = filepath.Join(env.StateDir, "tftp")
		if _, err := os.Stat(o.IPXERoot); err != nil {
			env.Logger.Warn("no iPXE binaries to serve under /ipxe/ (UEFI HTTP boot clients will fail); set provisioning.tftp.root",
				"missing", config.DefaultTFTPRoot)
			o.IPXERoot = ""
		}
	}
	key, err := bootnonce.LoadKey(filepath.Join(env.StateDir, store.KeyFileName))
	if err != nil {
		return fmt.Errorf("loading the boot nonce key: %w", err)
	}
	// Nonces minted before this start are refused: which of them were
	// redeemed died with the last process (their machines DHCP again).
	o.Nonces = bootnonce.NewRedeemer(key, bootnonce.DefaultMaxUsed, time.Now())
	orch := orchestrator.New(st, env.Config.Vetting, env.StateDir, env.Logger)
	o.Runs = vetRuns{st, orch}
	o.SAN = storeSAN{st: st, stateDir: env.StateDir, domain: env.Config.Provisioning.Domain, now: time.Now}
	o.Agent = protocol.NewHandler(protocol.Options{Tokens: orch, Backend: orch, Logger: env.Logger.With("component", "vetting-agent-api")})
	if _, err := os.Stat(o.VetImageRoot); err != nil {
		env.Logger.Warn("no vetting live image to serve; vet hosts need provisioning.http_boot.vet_image or their own kernel and initrd", "missing", o.VetImageRoot)
		o.VetImageRoot = ""
	}
	if _, err := os.Stat(o.DisklessImageRoot); err != nil {
		env.Logger.Warn("no diskless client image to serve; diskless hosts need provisioning.http_boot.diskless_image or their own kernel and initrd", "missing", o.DisklessImageRoot)
		o.DisklessImageRoot = ""
	}
	o.Register = RegisterOptionsFromConfig(env.Config.Provisioning.Diskless.Register, storeRegistrations{st}, key)
	s, err := New(o, storeHosts{st: st, now: time.Now, cfg: env.Config.Provisioning}, storeEvents{st}, env.Logger)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("binding HTTP boot %s: %w", o.Listen, err)
	}
	pctx, stop := context.WithCancel(ctx)
	pruned := make(chan struct{})
	go func() { defer close(pruned); pruneLoop(pctx, st, time.Now, env.Logger) }()
	defer func() { stop(); <-pruned }() // before the store closes
	return s.Serve(ctx, ln, env.Ready)
}

// OptionsFromConfig maps the appliance config to server options: scripts
// sent to a client inside a subnet with boot.http_base use it as their base.
func OptionsFromConfig(c config.Config, stateDir string) Options {
	subnets := c.Provisioning.Subnets
	files := c.Provisioning.HTTPBoot.Root
	if files == "" {
		files = filepath.Join(stateDir, "boot")
	}
	ipxe := c.Provisioning.TFTP.Root
	if ipxe == "" {
		ipxe = config.DefaultTFTPRoot
	}
	vet := c.Provisioning.HTTPBoot.VetImage
	if vet == "" {
		vet = config.DefaultVetImage
	}
	diskless := c.Provisioning.HTTPBoot.DisklessImage
	if diskless == "" {
		diskless = config.DefaultDisklessImage
	}
	return Options{
		DisklessImageRoot: diskless,
		Listen:            c.Provisioning.HTTPBootListen(),
		FilesRoot:         files,
		IPXERoot:          ipxe,
		VetImageRoot:      vet,
		Profiles:          DefaultProfiles(),
		Neighbor:          ProcNeighbor("/proc/net/arp"),
		BaseURL: func(client netip.Addr) string {
			for _, s := range subnets {
				if s.Boot.HTTPBase != "" && s.Prefix().Contains(client) {
					return s.HTTPBase(netip.Addr{}, 0) // http_base is set: no port needed
				}
			}
			return ""
		},
	}
}

// storeHosts reads hosts and leases from the machine database; now is the
// clock leases expire by.
type storeHosts struct {
	st  *store.Store
	now func() time.Time
	// cfg gives diskless hosts their role's root image and home.
	cfg config.Provisioning
}

func (s storeHosts) HostByMAC(ctx context.Context, mac string) (Host, error) {
	h, err := s.st.HostByMAC(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		return Host{}, fmt.Errorf("%w: %w", ErrUnknownHost, err)
	}
	if err != nil {
		return Host{}, err
	}
	out := Host{Name: h.Name, Profile: string(h.BootProfile), Token: h.Token, Reserved: h.IPv4, Kernel: h.Kernel, Initrd: h.Initrd, Cmdline: h.Cmdline,
		Enrolled: h.Role == store.EnrolledRole}
	if h.BootProfile == store.BootDiskless {
		if err := s.diskless(ctx, h, &out); err != nil {
			return Host{}, err
		}
	}
	return out, nil
}

// diskless resolves the host's root image choice (its own, else its
// role's) to the version its script names, and its home.
func (s storeHosts) diskless(ctx context.Context, h store.Host, out *Host) error {
	root, home := nfs.Choice(s.cfg, h)
	out.Home = home
	if root == "" {
		return nil
	}
	ri, err := s.st.RootImageByRef(ctx, root)
	switch {
	case errors.Is(err, store.ErrNotFound):
		out.RootError = err.Error() + " (import and promote it with kiln roots, or pin a version)"
	case err != nil:
		return err
	default:
		out.RootImage = ri.Name + "/" + strconv.Itoa(ri.Version)
	}
	return nil
}

func (s storeHosts) LeasedTo(ctx context.Context, ip netip.Addr) (string, error) {
	if !ip.Is4() {
		return "", nil // DHCPv4 leases only
	}
	l, err := s.st.LeaseByIP(ctx, ip)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if l.State != store.LeaseBound || !l.Active(s.now()) {
		return "", nil
	}
	return l.MAC, nil
}

// vetRuns starts vet hosts' runs through the orchestrator.
type vetRuns struct {
	st   *store.Store
	orch *orchestrator.Orchestrator
}

func (v vetRuns) RunToken(ctx context.Context, name string) (string, error) {
	h, err := v.st.HostByName(ctx, name)
	if err != nil {
		return "", err
	}
	_, tok, err := v.orch.BootToken(ctx, h)
	if errors.Is(err, orchestrator.ErrNoRun) {
		return "", fmt.Errorf("%w: %w", ErrNoRun, err)
	}
	return tok, err
}

// storeSAN reads iscsi hosts' logins from the machine database: the names
// the iscsi service gives its targets and the host's CHAP secrets, opened
// with the iscsi service's sealing key (<state>/iscsi/chap.key).
type storeSAN struct {
	st       *store.Store
	stateDir string
	domain   string
	now      func() time.Time
}

func (s storeSAN) SANLogin(ctx context.Context, host string) (SANLogin, error) {
	if s.domain == "" {
		return SANLogin{}, fmt.Errorf("%w: iSCSI boot needs provisioning.domain set on the appliance (the naming authority of its targets)", ErrNoSAN)
	}
	in, err := s.st.InitiatorOf(ctx, host)
	if errors.Is(err, store.ErrNotFound) {
		return SANLogin{}, fmt.Errorf("%w: host %s has no iSCSI CHAP credentials: make them with kiln volumes chap %s", ErrNoSAN, host, host)
	}
	if err != nil {
		return SANLogin{}, err
	}
	vols, err := s.st.Volumes(ctx)
	if err != nil {
		return SANLogin{}, err
	}
	if !slices.ContainsFunc(vols, func(v store.Volume) bool { return v.Host == host }) {
		return SANLogin{}, fmt.Errorf("%w: host %s has no iSCSI volume to boot from: create one with kiln volumes create %s/boot", ErrNoSAN, host, host)
	}
	names, err := iscsi.NamesFor(ctx, s.st, s.domain, s.now())
	if err != nil {
		return SANLogin{}, fmt.Errorf("%w: %w", ErrNoSAN, err)
	}
	// Opened per request: a key restored from a backup is used at once.
	sealer, err := iscsi.OpenSealer(filepath.Join(s.stateDir, "iscsi", iscsi.KeyFile))
	if err != nil {
		return SANLogin{}, err
	}
	chap, err := sealer.Unseal(in)
	if errors.Is(err, iscsi.ErrUnseal) {
		return SANLogin{}, fmt.Errorf("%w: host %s's CHAP secrets do not open with this appliance's key: make new ones with kiln volumes chap %s", ErrNoSAN, host, host)
	}
	if err != nil {
		return SANLogin{}, err
	}
	return SANLogin{Target: names.Target(host), Initiator: in.IQN, Username: chap.UserID, Password: chap.Password,
		ReverseUsername: chap.MutualUserID, ReversePassword: chap.MutualPassword}, nil
}

// storeEvents stores boot events; downloads that name no MAC are attributed
// through the client's lease.
type storeEvents struct{ st *store.Store }

func (s storeEvents) AddBootEvent(ctx context.Context, ev Event) error {
	if ev.MAC == "" {
		l, err := s.st.LeaseByIP(ctx, ev.Client)
		if err != nil || l.MAC == "" {
			return fmt.Errorf("no MAC known for %s; event %s %s dropped", ev.Client, ev.Kind, ev.Detail)
		}
		ev.MAC = l.MAC
	}
	if ev.Host == "" {
		if h, err := s.st.HostByMAC(ctx, ev.MAC); err == nil {
			ev.Host = h.Name
		}
	}
	return s.st.AddBootEvent(ctx, store.BootEvent{MAC: ev.MAC, Host: ev.Host, Kind: ev.Kind, Detail: ev.Detail, Time: ev.Time})
}

// storeRegistrations records registrations at the machine in the machine
// database.
type storeRegistrations struct{ st *store.Store }

func (s storeRegistrations) Register(ctx context.Context, r Registration) error {
	_, err := s.st.Register(ctx, toStoreRegistration(r))
	return registerError(err)
}

func (s storeRegistrations) RequestRegistration(ctx context.Context, r Registration) error {
	_, err := s.st.RequestRegistration(ctx, toStoreRegistration(r))
	return registerError(err)
}

func (s storeRegistrations) RegistrationState(ctx context.Context, mac string) (state, name, reason string, err error) {
	r, err := s.st.RegistrationOf(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", "", nil
	}
	if err != nil {
		return "", "", "", err
	}
	return r.State, r.Name, r.Reason, nil
}

func toStoreRegistration(r Registration) store.Registration {
	return store.Registration{MAC: r.MAC, Name: r.Name, Role: r.Role, BootProfile: store.BootProfile(r.Profile),
		RootImage: r.RootImage, Home: r.Home, Client: r.Client}
}

// registerError turns the store's verdict on a typed name into what the
// machine's console shows.
func registerError(err error) error {
	var es store.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			if e.Field == "name" {
				return &NameError{Problem: e.Problem}
			}
		}
	}
	if errors.Is(err, store.ErrNotEnrolled) {
		return fmt.Errorf("%w: %w", ErrNotEnrolled, err)
	}
	return err
}
