package netconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/internal/resolvconf"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/firewall"
)

// Metrics of the default routes DHCP leases install.
const (
	upstreamMetric   = 100
	managementMetric = 200
)

// Manager applies a config's network and firewall sections to one
// namespace and reports their status. Apply is serialised.
type Manager struct {
	sys *System
	fw  *firewall.Firewall // nil: leave the firewall alone
	// resolvConf is the file written from network.resolver and the leases ("" : none).
	resolvConf string
	hostname   string
	// sysClassNet is where link speeds are read (/sys/class/net).
	sysClassNet string
	log         *slog.Logger
	// ctx bounds the DHCP clients.
	ctx context.Context

	// applyMu serialises Apply.
	applyMu sync.Mutex

	// mu guards the fields below.
	mu        sync.Mutex
	cfg       config.Config
	managed   bool // a config with interfaces was applied (so later ones must clean up)
	lastApply time.Time
	lastPlan  Plan
	lastErr   error
	dhcp      map[string]context.CancelFunc
	leases    map[string]*Lease
}

// ManagerOptions configure NewManager.
type ManagerOptions struct {
	System      *System
	Firewall    *firewall.Firewall
	ResolvConf  string
	Hostname    string
	SysClassNet string
	Logger      *slog.Logger
}

// NewManager returns a Manager; DHCP clients it starts end with ctx.
func NewManager(ctx context.Context, o ManagerOptions) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SysClassNet == "" {
		o.SysClassNet = "/sys/class/net"
	}
	return &Manager{
		sys: o.System, fw: o.Firewall, resolvConf: o.ResolvConf, hostname: o.Hostname,
		sysClassNet: o.SysClassNet, log: o.Logger, ctx: ctx,
		dhcp: map[string]context.CancelFunc{}, leases: map[string]*Lease{},
	}
}

// Result says what an Apply changed.
type Result struct {
	Plan            Plan
	FirewallChanged bool
}

// Empty reports whether nothing changed.
func (r Result) Empty() bool { return len(r.Plan) == 0 && !r.FirewallChanged }

// Apply makes the namespace match c's network and firewall sections. A plan
// error (an unknown MAC, a foreign link in the way) changes nothing. A config
// without interfaces is not applied at all unless an earlier one was: then
// kiln's links, routes and firewall are removed.
func (m *Manager) Apply(ctx context.Context, c config.Config) (res Result, err error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	defer func() {
		m.mu.Lock()
		m.lastApply, m.lastErr = time.Now(), err
		if err == nil {
			m.lastPlan = res.Plan
		}
		m.mu.Unlock()
	}()
	m.mu.Lock()
	managed := m.managed
	m.mu.Unlock()
	if !c.Network.Configured() && !managed {
		return Result{}, nil
	}
	obs, err := m.sys.Observe()
	if err != nil {
		return Result{}, err
	}
	plan, err := MakePlan(c.Network, obs)
	if err != nil {
		return Result{}, err
	}
	res.Plan = plan
	if c.Network.Configured() {
		// From the first change on, a later config without interfaces must clean up.
		m.mu.Lock()
		m.managed = true
		m.mu.Unlock()
	}
	if err := m.sys.Apply(plan); err != nil {
		return res, err
	}
	if len(plan) > 0 {
		m.log.Info("network applied", "steps", len(plan), "plan", strings.Join(plan.Strings(), "; "))
	}
	m.mu.Lock()
	m.cfg = c
	m.mu.Unlock()
	if len(c.Firewall.Masquerade.Hosts) > 0 {
		if err := m.sys.SetForwarding(); err != nil {
			return res, err
		}
	}
	if m.fw != nil {
		if c.Network.Configured() {
			r, err := firewall.Render(c)
			if err != nil {
				return res, fmt.Errorf("rendering the firewall: %w", err)
			}
			if res.FirewallChanged, err = m.fw.Apply(r); err != nil {
				return res, fmt.Errorf("applying the firewall: %w", err)
			}
			if res.FirewallChanged {
				m.log.Info("firewall applied", "ruleset", r.Hash())
			}
		} else if err := m.fw.Remove(); err != nil {
			return res, err
		}
	}
	m.reconcileDHCP(c)
	return res, m.writeResolvConf()
}

// reconcileDHCP runs a client on every interface with dhcp: true, and stops the others.
func (m *Manager) reconcileDHCP(c config.Config) {
	want := map[string]int{}
	for _, itf := range c.Network.Interfaces {
		if itf.DHCP {
			want[itf.Name] = managementMetric
			if itf.Role == config.RoleUpstream {
				want[itf.Name] = upstreamMetric
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, cancel := range m.dhcp {
		if _, ok := want[name]; !ok {
			cancel()
			delete(m.dhcp, name)
			delete(m.leases, name)
		}
	}
	for name, metric := range want {
		if _, ok := m.dhcp[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		m.dhcp[name] = cancel
		d := &dhcpClient{sys: m.sys, ifname: name, hostname: m.hostname, metric: metric,
			log: m.log.With("interface", name), onLease: m.setLease}
		go d.run(ctx)
	}
}

func (m *Manager) setLease(l *Lease) {
	m.mu.Lock()
	if _, running := m.dhcp[l.Interface]; !running {
		m.mu.Unlock()
		return
	}
	if l.Addr.IsValid() {
		m.leases[l.Interface] = l
	} else {
		delete(m.leases, l.Interface)
	}
	m.mu.Unlock()
	if err := m.writeResolvConf(); err != nil {
		m.log.Error("writing resolv.conf", "err", err)
	}
}

// Leases returns the current DHCP leases by interface.
func (m *Manager) Leases() map[string]Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Lease{}
	for k, v := range m.leases {
		out[k] = *v
	}
	return out
}

func (m *Manager) writeResolvConf() error {
	if m.resolvConf == "" {
		return nil
	}
	m.mu.Lock()
	r := m.cfg.Network.Resolver
	var leases []*Lease
	for _, l := range m.leases {
		leases = append(leases, l)
	}
	m.mu.Unlock()
	b := []byte(ResolvConf(r, leases))
	if cur, err := os.ReadFile(m.resolvConf); err == nil && bytes.Equal(cur, b) {
		return nil
	}
	return atomicfile.WriteFile(m.resolvConf, b, 0o644)
}

// ResolvConf renders resolv.conf: the configured resolver first, then the
// leases' servers and domains (interfaces in name order), without
// duplicates, at most three servers (as libc reads).
func ResolvConf(r config.Resolver, leases []*Lease) string {
	sort.Slice(leases, func(i, j int) bool { return leases[i].Interface < leases[j].Interface })
	servers := append([]string(nil), r.Nameservers...)
	search := append([]string(nil), r.Search...)
	for _, l := range leases {
		for _, d := range l.DNS {
			servers = append(servers, d.String())
		}
		search = append(search, l.Search...)
	}
	return resolvconf.Render("written by kiln netconf from network.resolver and DHCP leases", servers, search)
}

// Status is the network plane as it is now.
type Status struct {
	// Managed is true once kiln applied a config with network.interfaces.
	Managed bool         `json:"managed"`
	Links   []LinkStatus `json:"links"`
	Leases  []Lease      `json:"leases,omitempty"`
	// Firewall is the kiln table's state.
	Firewall FirewallStatus `json:"firewall"`
	// Try is the pending trial config, if any.
	Try *TryStatus `json:"try,omitempty"`
	// LastApply is when a config was last applied; LastPlan its steps
	// (empty: nothing had to change), LastError why it failed.
	LastApply time.Time `json:"last_apply,omitzero"`
	LastPlan  []string  `json:"last_plan,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

// LinkStatus is one link.
type LinkStatus struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Role      string   `json:"role,omitempty"`
	MAC       string   `json:"mac,omitempty"`
	State     string   `json:"state"` // operstate: up, down, lowerlayerdown, unknown…
	AdminUp   bool     `json:"admin_up"`
	Carrier   bool     `json:"carrier"`
	SpeedMbps int      `json:"speed_mbps"` // -1 when the driver does not say
	MTU       int      `json:"mtu"`
	Master    string   `json:"master,omitempty"`
	Addresses []string `json:"addresses"`
}

// FirewallStatus is the kiln table's state.
type FirewallStatus struct {
	// Ruleset is the hash of the ruleset in the kernel ("" : no kiln table).
	Ruleset string `json:"ruleset,omitempty"`
	// Text is that ruleset in nft(8) syntax, rendered from the applied config
	// ("" when the kernel holds a ruleset other than the config's).
	Text  string              `json:"text,omitempty"`
	Bans  []firewall.BanEntry `json:"bans,omitempty"`
	Error string              `json:"error,omitempty"`
}

// Status reads the links and firewall now.
func (m *Manager) Status() (Status, error) {
	obs, err := m.sys.Observe()
	if err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	st := Status{Managed: m.managed, LastApply: m.lastApply, LastPlan: m.lastPlan.Strings()}
	if m.lastErr != nil {
		st.LastError = m.lastErr.Error()
	}
	cfg := m.cfg
	for _, l := range m.leases {
		st.Leases = append(st.Leases, *l)
	}
	m.mu.Unlock()
	sort.Slice(st.Leases, func(i, j int) bool { return st.Leases[i].Interface < st.Leases[j].Interface })
	st.Links = LinkStatuses(obs, cfg.Network, m.speed)
	if m.fw != nil && st.Managed {
		h, err := m.fw.Applied()
		st.Firewall.Ruleset = h
		if r, rerr := firewall.Render(cfg); rerr == nil && h != "" && r.Hash() == h {
			st.Firewall.Text = r.Text()
		}
		if err == nil {
			st.Firewall.Bans, err = m.fw.Bans()
		}
		if err != nil {
			st.Firewall.Error = err.Error()
		}
	}
	return st, nil
}

// LinkStatuses describes the observed links, with roles from n. It is pure
// apart from speed, which reads a link's speed in Mb/s (-1 unknown).
func LinkStatuses(obs Observed, n config.Network, speed func(name string) int) []LinkStatus {
	byIndex := map[int]string{}
	for _, l := range obs.Links {
		byIndex[l.Index] = l.Name
	}
	var out []LinkStatus
	for _, l := range obs.Links {
		s := LinkStatus{Name: l.Name, Kind: l.Kind, MAC: l.MAC, State: l.State, AdminUp: l.Up, Carrier: l.Carrier,
			SpeedMbps: speed(l.Name), MTU: l.MTU, Master: byIndex[l.Master], Addresses: []string{}}
		if itf, ok := n.Find(l.Name); ok {
			s.Role = itf.Role
		}
		for _, a := range l.Addrs {
			s.Addresses = append(s.Addresses, a.Prefix.String())
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// speed reads /sys/class/net/<name>/speed; -1 when absent or unknown (a link
// that is down or a virtual NIC).
func (m *Manager) speed(name string) int {
	if m.sys.NetNSFd() >= 0 {
		return -1 // sysfs shows the process's own namespace
	}
	b, err := os.ReadFile(filepath.Join(m.sysClassNet, name, "speed"))
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return -1
	}
	return v
}

// Config returns the config applied last.
func (m *Manager) Config() config.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// errPlan reports whether err is a config that does not fit the links
// present (nothing was changed).
func errPlan(err error) bool {
	var fe *config.FieldError
	return errors.As(err, &fe)
}
