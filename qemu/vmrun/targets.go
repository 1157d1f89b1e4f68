package vmrun

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"kiln.dev/kiln/image"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/services/config"
)

// `kiln vm run --targets N` puts N vetting targets next to the appliance:
// the appliance gets a second NIC (prov0) on a private loopback segment and,
// through fw_cfg, a config that serves a provisioning subnet there and a
// hosts file that registers the targets with boot profile vet and an
// expected spec they meet. With vetting.auto_run (the default) each target
// is vetted on its first network boot; after its run it powers itself off.
const (
	// MaxTargets bounds --targets: every target is a 2 GiB TCG guest.
	MaxTargets = 8
	// targetsApplianceMAC is the appliance's NIC on the targets' segment.
	targetsApplianceMAC = "52:54:00:6b:6c:20"
	// targetsIface and targetsSubnetName name that NIC and its subnet in
	// the generated config.
	targetsIface      = "prov0"
	targetsSubnetName = "vm-targets"
	// targetsHostsName is the hosts file's fw_cfg name below opt/kiln/;
	// PID 1 copies it to targetsFwCfgDir.
	targetsHostsName = "hosts.yaml"
	targetsFwCfgDir  = "/run/kiln/fw_cfg"
)

// targetsPrefix is the provisioning subnet; the appliance is .1, target i
// has .10+i reserved, unknown machines get the pool.
var targetsPrefix = netip.MustParsePrefix("10.77.0.0/24")

// targetName and targetMAC name target i (1-based).
func targetName(i int) string { return fmt.Sprintf("target-%d", i) }
func targetMAC(i int) string  { return fmt.Sprintf("52:54:00:6b:76:%02x", i) }

func targetAddr(i int) netip.Addr {
	a := targetsPrefix.Addr().As4()
	a[3] = byte(10 + i)
	return netip.AddrFrom4(a)
}

func applianceAddr() netip.Addr { return targetsPrefix.Addr().Next() }

// targetsConfig returns base (an appliance config in YAML: the user's
// --config or the image's default) with the targets' segment added: the
// management NIC on DHCP when base configures no interfaces, prov0 with the
// subnet's first address, an authoritative subnet on it and
// provisioning.hosts_file pointing at the fw_cfg hosts file. Comments and
// order of base are kept. The result is checked with config.Parse.
func targetsConfig(base []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	if doc.Kind == 0 { // empty file
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the config is not a YAML mapping (start it with a key such as \"hostname: kiln\")")
	}
	network, err := mappingAt(root, "network")
	if err != nil {
		return nil, err
	}
	ifaces, err := sequenceAt(network, "network", "interfaces")
	if err != nil {
		return nil, err
	}
	for i, n := range ifaces.Content {
		var it struct{ Name, MAC string }
		n.Decode(&it)
		if it.Name == targetsIface || strings.EqualFold(it.MAC, targetsApplianceMAC) {
			return nil, fmt.Errorf("network.interfaces[%d] (%s, %s): --targets adds its own interface %s with MAC %s: rename or drop yours, or use --targets 0",
				i, it.Name, it.MAC, targetsIface, targetsApplianceMAC)
		}
	}
	// Field order as in docs/config.md.
	type iface struct {
		Name      string   `yaml:"name"`
		MAC       string   `yaml:"mac"`
		Role      string   `yaml:"role"`
		Addresses []string `yaml:"addresses,omitempty,flow"`
		DHCP      bool     `yaml:"dhcp,omitempty"`
	}
	var add []any
	if len(ifaces.Content) == 0 {
		// Listing interfaces turns off DHCP on every NIC at boot: list the
		// management NIC too, on DHCP as before.
		add = append(add, iface{Name: "mgmt0", MAC: qemu.DefaultMgmtMAC, Role: config.RoleManagement, DHCP: true})
	}
	add = append(add, iface{Name: targetsIface, MAC: targetsApplianceMAC, Role: config.RoleProvisioning,
		Addresses: []string{netip.PrefixFrom(applianceAddr(), targetsPrefix.Bits()).String()}})
	if err := appendNodes(ifaces, add...); err != nil {
		return nil, err
	}

	prov, err := mappingAt(root, "provisioning")
	if err != nil {
		return nil, err
	}
	if hf := valueOf(prov, "hosts_file"); hf != nil && hf.Value != "" {
		return nil, fmt.Errorf("provisioning.hosts_file is %q: --targets registers the targets with a hosts file of its own; "+
			"register your hosts through the API or `kiln hosts import`, or use --targets 0", hf.Value)
	}
	setScalar(prov, "hosts_file", targetsFwCfgDir+"/"+targetsHostsName)
	subnets, err := sequenceAt(prov, "provisioning", "subnets")
	if err != nil {
		return nil, err
	}
	type pool struct {
		Start string `yaml:"start"`
		End   string `yaml:"end"`
	}
	type subnet struct {
		Name      string `yaml:"name"`
		Interface string `yaml:"interface"`
		CIDR      string `yaml:"cidr"`
		Mode      string `yaml:"mode"`
		Pool      pool   `yaml:"pool,flow"`
		LeaseTime string `yaml:"lease_time"`
	}
	first, last := targetsPrefix.Addr().As4(), targetsPrefix.Addr().As4()
	first[3], last[3] = 100, 199
	if err := appendNodes(subnets, subnet{Name: targetsSubnetName, Interface: targetsIface, CIDR: targetsPrefix.String(),
		Mode: config.ModeAuthoritative, Pool: pool{netip.AddrFrom4(first).String(), netip.AddrFrom4(last).String()},
		LeaseTime: "1h"}); err != nil {
		return nil, err
	}

	var out bytes.Buffer
	out.WriteString("# written by `kiln vm run --targets`: the config below plus the vetting targets' segment\n")
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("writing the config: %w", err)
	}
	if _, err := config.Parse(bytes.NewReader(out.Bytes())); err != nil {
		return nil, fmt.Errorf("the config with the targets' segment added is invalid: %w", err)
	}
	return out.Bytes(), nil
}

// targetsHosts is the hosts file registering targets 1…n: boot profile vet,
// a reserved address, and spec (the expected spec they meet).
func targetsHosts(n int, spec string) ([]byte, error) {
	type host struct {
		Name         string   `yaml:"name"`
		MACs         []string `yaml:"macs,flow"`
		BootProfile  string   `yaml:"boot_profile"`
		IPv4         string   `yaml:"ipv4"`
		ExpectedSpec string   `yaml:"expected_spec"`
	}
	var f struct {
		Hosts []host `yaml:"hosts"`
	}
	for i := 1; i <= n; i++ {
		f.Hosts = append(f.Hosts, host{Name: targetName(i), MACs: []string{targetMAC(i)}, BootProfile: "vet",
			IPv4: targetAddr(i).String(), ExpectedSpec: spec})
	}
	var out bytes.Buffer
	out.WriteString("# written by `kiln vm run --targets`: the QEMU vetting targets (imported at every start)\n")
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// mappingAt returns parent's mapping under key, adding an empty one if the
// key is missing or null.
func mappingAt(parent *yaml.Node, key string) (*yaml.Node, error) {
	return childAt(parent, key, key, yaml.MappingNode)
}

// sequenceAt returns parent's sequence under key (path names it in errors).
func sequenceAt(parent *yaml.Node, path, key string) (*yaml.Node, error) {
	return childAt(parent, path+"."+key, key, yaml.SequenceNode)
}

func childAt(parent *yaml.Node, path, key string, kind yaml.Kind) (*yaml.Node, error) {
	if v := valueOf(parent, key); v != nil {
		if v.Kind == kind {
			return v, nil
		}
		if v.Kind != yaml.ScalarNode || v.Tag != "!!null" {
			want := "a mapping"
			if kind == yaml.SequenceNode {
				want = "a list"
			}
			return nil, fmt.Errorf("%s (line %d) is not %s", path, v.Line, want)
		}
		*v = yaml.Node{Kind: kind}
		return v, nil
	}
	v := &yaml.Node{Kind: kind}
	parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	return v, nil
}

func valueOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setScalar(m *yaml.Node, key, value string) {
	if v := valueOf(m, key); v != nil {
		*v = yaml.Node{Kind: yaml.ScalarNode, Value: value}
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
}

// appendNodes appends values (encoded as YAML) to the sequence seq.
func appendNodes(seq *yaml.Node, values ...any) error {
	for _, v := range values {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return err
		}
		seq.Content = append(seq.Content, &n)
	}
	return nil
}

// targetSegment returns the appliance's NIC and the targets' NICs on one
// private segment: a dgram pair for one target, a loopback multicast group
// for more.
func targetSegment(n int) (qemu.NIC, []qemu.NIC, error) {
	if n == 1 {
		a, t, err := qemu.L2Pair(targetsApplianceMAC, targetMAC(1))
		return a, []qemu.NIC{t}, err
	}
	port, err := qemu.FreeUDPPort()
	if err != nil {
		return qemu.NIC{}, nil, err
	}
	group := fmt.Sprintf("230.0.0.1:%d", port)
	nics := make([]qemu.NIC, n)
	for i := range nics {
		nics[i] = qemu.NIC{Kind: qemu.Mcast, Group: group, MAC: targetMAC(i + 1)}
	}
	return qemu.NIC{Kind: qemu.Mcast, Group: group, MAC: targetsApplianceMAC}, nics, nil
}

// vmTargets runs the target VMs of `kiln vm run --targets`.
type vmTargets struct {
	targets []qemu.Target
	log     *slog.Logger
	say     func(string, ...any)

	// mu guards vms, why and closed.
	mu  sync.Mutex
	vms []*qemu.VM // nil: powered off
	// why is set when kiln powered the target off, and says why.
	why    []string
	closed bool
}

func newVMTargets(targets []qemu.Target, log *slog.Logger, say func(string, ...any)) *vmTargets {
	return &vmTargets{targets: targets, log: log, say: say, vms: make([]*qemu.VM, len(targets)), why: make([]string, len(targets))}
}

// fallThroughRE is the end of a boot script that did not boot the live
// image: no run for the host, or the image could not be loaded. The line
// before names the reason.
var fallThroughRE = regexp.MustCompile(`kiln: .*falling through to the next boot device`)

// fallThroughReason says why a boot script fell through: its own line
// ("network boot of x failed") or, after the bare fall-through line of a
// refused script, the "kiln: …" line before it on the console (lines).
func fallThroughReason(lines []string, matched string) string {
	const tail = "falling through to the next boot device"
	reason := strings.TrimSpace(matched)
	if strings.HasSuffix(reason, "kiln: "+tail) {
		for j := len(lines) - 1; j >= 0; j-- {
			if t := strings.TrimSpace(lines[j]); strings.HasPrefix(t, "kiln: ") && !strings.HasSuffix(t, tail) {
				reason = t
				break
			}
		}
	}
	_, reason, _ = strings.Cut(reason, "kiln: ")
	if reason = strings.TrimSuffix(strings.TrimSuffix(reason, tail), ", "); reason == "" {
		return "its boot script fell through"
	}
	return reason
}

// powerOn starts the targets that are off and says so.
func (ts *vmTargets) powerOn(ctx context.Context) {
	for i := range ts.targets {
		if err := ts.start(ctx, i); err != nil {
			ts.say("%s: %v", targetName(i+1), err)
		}
	}
}

func (ts *vmTargets) start(ctx context.Context, i int) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed || ts.vms[i] != nil {
		return nil
	}
	tg := ts.targets[i]
	cfg, err := tg.Config(ctx)
	if err != nil {
		return err
	}
	vm, err := qemu.Start(context.WithoutCancel(ctx), cfg, qemu.Options{Logger: ts.log, AnswerCursorQueries: true})
	if err != nil {
		return err
	}
	ts.vms[i], ts.why[i] = vm, ""
	name := targetName(i + 1)
	ts.say("%s (%s) powered on (network boot); serial log %s", name, tg.NIC.MAC, filepath.Join(tg.Dir, "serial.log"))
	go ts.watch(i, vm)
	return nil
}

// watch reports target i's power-off. A target whose boot script fell
// through would sit in the firmware's menu, where a new run never reaches it
// (QEMU has no Wake-on-LAN): kiln powers it off and says why.
func (ts *vmTargets) watch(i int, vm *qemu.VM) {
	name := targetName(i + 1)
	go func() {
		l, err := vm.ExpectLine(context.Background(), fallThroughRE, 365*24*time.Hour)
		if err != nil {
			return // powered off first
		}
		var texts []string
		for _, l := range vm.Lines() {
			texts = append(texts, l.Text)
		}
		reason := fallThroughReason(texts, l.Text)
		ts.mu.Lock()
		ts.why[i] = reason
		ts.mu.Unlock()
		qctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		vm.Quit(qctx)
		cancel()
	}()
	<-vm.Exited()
	ts.mu.Lock()
	closed, why := ts.closed, ts.why[i]
	ts.vms[i] = nil
	ts.mu.Unlock()
	vm.Close()
	switch {
	case closed:
	case why != "":
		ts.say("%s did not boot the vetting image (%s): powered off; start a run (web UI, or kiln vet start %s), then Ctrl-A t powers it on",
			name, why, name)
	default:
		ts.say("%s powered off (its vetting run is over); left off: Ctrl-A t powers it on again", name)
	}
}

// close stops every target (they are scratch machines: no clean shutdown).
func (ts *vmTargets) close() {
	ts.mu.Lock()
	ts.closed = true
	vms := append([]*qemu.VM(nil), ts.vms...)
	ts.mu.Unlock()
	for _, vm := range vms {
		if vm != nil {
			vm.Close()
		}
	}
}

// prepareTargets writes the appliance's fw_cfg files for --targets into
// <state>/targets (the config: --config or the image's default with the
// segment added; the hosts file) and returns them with the appliance's NIC
// on the segment and the targets, each with its directory below it.
func prepareTargets(o Options) ([]qemu.FwCfg, qemu.NIC, []qemu.Target, error) {
	base := image.DefaultConfig()
	if o.Config != "" {
		b, err := os.ReadFile(o.Config)
		if err != nil {
			return nil, qemu.NIC{}, nil, fmt.Errorf("--config: %w", err)
		}
		base = b
	}
	conf, err := targetsConfig(base)
	if err != nil {
		if o.Config != "" {
			return nil, qemu.NIC{}, nil, fmt.Errorf("--targets with --config %s: %w", o.Config, err)
		}
		return nil, qemu.NIC{}, nil, fmt.Errorf("--targets: %w", err)
	}
	dir, err := filepath.Abs(filepath.Join(o.State, "targets"))
	if err != nil {
		return nil, qemu.NIC{}, nil, err
	}
	applianceNIC, nics, err := targetSegment(o.Targets)
	if err != nil {
		return nil, qemu.NIC{}, nil, err
	}
	targets := make([]qemu.Target, o.Targets)
	for i := range targets {
		targets[i] = qemu.Target{Dir: filepath.Join(dir, targetName(i+1)), NIC: nics[i]}
	}
	hosts, err := targetsHosts(o.Targets, targets[0].ExpectedSpec())
	if err != nil {
		return nil, qemu.NIC{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, qemu.NIC{}, nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	confPath, hostsPath := filepath.Join(dir, "kiln.yaml"), filepath.Join(dir, targetsHostsName)
	for p, b := range map[string][]byte{confPath: conf, hostsPath: hosts} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, qemu.NIC{}, nil, fmt.Errorf("writing %s: %w", p, err)
		}
	}
	files := []qemu.FwCfg{{Name: "opt/kiln/config", File: confPath}, {Name: "opt/kiln/" + targetsHostsName, File: hostsPath}}
	return files, applianceNIC, targets, nil
}
