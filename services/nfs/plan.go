package nfs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"kiln.dev/kiln/services/internal/exportname"
)

// Host is a machine the exports may serve.
type Host struct {
	Name string
	// Addrs are the host's reserved address and current leases.
	Addrs []netip.Addr
	// Root is the host's root image: "name" (its promoted version), "name@N"
	// (version N) or empty (none).
	Root string
	// Home names the home export the host mounts read-write; empty: none.
	Home string
}

// RootImage is one committed version of a root image below
// <export root>/roots/<Name>/<Version>.
type RootImage struct {
	Name     string
	Version  int
	Promoted bool
}

// Input is everything the desired exports depend on.
type Input struct {
	// DataDir is the data partition's mount point: it holds the machine
	// database and secrets, so neither it nor anything outside ExportRoot is
	// ever exported.
	DataDir string
	// ExportRoot is the NFSv4 pseudo-root, strictly below DataDir.
	ExportRoot string
	// Subnets are the provisioning subnets; addresses outside them are refused.
	Subnets []netip.Prefix
	Hosts   []Host
	Roots   []RootImage
	// Homes are the home exports that exist (directories below
	// <export root>/homes).
	Homes []string
}

// Export is one exported directory.
type Export struct {
	// Name is the path clients mount, relative to the pseudo-root ("/roots/base/3").
	Name string
	// Path is the directory on the appliance.
	Path string
	FSID uint32
	// Pseudo exports are the pseudo-root and the directories leading to real
	// exports: clients may only walk them.
	Pseudo   bool
	ReadOnly bool
	// Clients are the host names (auth domains) allowed, sorted.
	Clients []string
}

// Refusal is a host or address the plan leaves out, with the reason.
type Refusal struct {
	Host   string
	Addr   netip.Addr // zero when the refusal is not about one address
	Reason string
}

// Plan is the desired export state.
type Plan struct {
	// Exports are sorted by Name; the first is the pseudo-root.
	Exports []Export
	// Clients maps each allowed address to its host name.
	Clients map[netip.Addr]string
	// Mounts maps each client host to what it boots and mounts.
	Mounts  map[string]Mount
	Refused []Refusal
}

// Mount is what one host mounts: export names relative to the pseudo-root
// ("/roots/contest/2", "/homes/lab"); empty for none. Root is the version the
// host's choice resolves to now (the promoted one unless pinned): its boot
// script names it, and a machine keeps the version it booted.
type Mount struct {
	Root, Home string
}

// ErrExposesData marks an input whose exports would reach outside the export
// root (the data partition itself, the machine database): it is refused whole
// and the exports in force stay as they are.
var ErrExposesData = errors.New("export would expose the data partition")

// Anonymous uid/gid for squashed requests (nobody/nogroup).
const anonID = 65534

// ValidName reports whether s may name a root image or a home; the error
// names field and says what to use instead.
func ValidName(field, s string) error {
	if !exportname.Valid(s) {
		return fmt.Errorf("%s %q is not a valid name: use %s", field, s, exportname.Rule)
	}
	return nil
}

// checkRoot refuses an export root that is not strictly inside the data
// partition.
func checkRoot(in Input) error {
	if !path.IsAbs(in.DataDir) || path.Clean(in.DataDir) != in.DataDir {
		return fmt.Errorf("data directory %q is not a clean absolute path", in.DataDir)
	}
	if !path.IsAbs(in.ExportRoot) || path.Clean(in.ExportRoot) != in.ExportRoot {
		return fmt.Errorf("provisioning.nfs.export_root %q is not a clean absolute path (use e.g. %s/nfs): %w", in.ExportRoot, in.DataDir, ErrExposesData)
	}
	if in.ExportRoot == in.DataDir || !strings.HasPrefix(in.ExportRoot, strings.TrimSuffix(in.DataDir, "/")+"/") {
		return fmt.Errorf("provisioning.nfs.export_root %q is not a directory below the data partition %s (exporting it or anything outside would expose the machine database; use e.g. %s/nfs): %w",
			in.ExportRoot, in.DataDir, in.DataDir, ErrExposesData)
	}
	return nil
}

// MakePlan computes the desired exports. It fails only when the input as a
// whole cannot be served (an export root that would expose the data
// partition, an fsid collision); a host whose root image or home does not
// exist, or whose address is outside the subnets, is left out and listed in
// Refused.
func MakePlan(in Input) (Plan, error) {
	if err := checkRoot(in); err != nil {
		return Plan{}, err
	}
	p := Plan{Clients: map[netip.Addr]string{}, Mounts: map[string]Mount{}}
	versions := map[string][]RootImage{}
	for _, r := range in.Roots {
		if !exportname.Valid(r.Name) || r.Version < 1 {
			return Plan{}, fmt.Errorf("root image %q version %d: invalid name or version: %w", r.Name, r.Version, ErrExposesData)
		}
		versions[r.Name] = append(versions[r.Name], r)
	}
	homes := map[string]bool{}
	for _, h := range in.Homes {
		if !exportname.Valid(h) {
			return Plan{}, fmt.Errorf("home %q: invalid name: %w", h, ErrExposesData)
		}
		homes[h] = true
	}

	// Real exports by name, each with its clients.
	type exp struct {
		ro      bool
		clients map[string]bool
	}
	real := map[string]*exp{}
	grant := func(name string, ro bool, host string) {
		e := real[name]
		if e == nil {
			e = &exp{ro: ro, clients: map[string]bool{}}
			real[name] = e
		}
		e.clients[host] = true
	}
	hosts := slices.Clone(in.Hosts)
	slices.SortFunc(hosts, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	for _, h := range hosts {
		var addrs []netip.Addr
		for _, a := range h.Addrs {
			a = a.Unmap()
			if !slices.ContainsFunc(in.Subnets, func(s netip.Prefix) bool { return s.Contains(a) }) {
				p.Refused = append(p.Refused, Refusal{Host: h.Name, Addr: a, Reason: "address outside the provisioning subnets"})
				continue
			}
			if other, dup := p.Clients[a]; dup && other != h.Name {
				p.Refused = append(p.Refused, Refusal{Host: h.Name, Addr: a, Reason: "address also belongs to host " + other})
				continue
			}
			addrs = append(addrs, a)
		}
		if len(addrs) == 0 {
			if len(h.Addrs) == 0 && (h.Root != "" || h.Home != "") {
				p.Refused = append(p.Refused, Refusal{Host: h.Name, Reason: "no reserved address or lease"})
			}
			continue
		}
		var m Mount
		if h.Root != "" {
			if boot, ok := rootExport(h.Root, versions); ok {
				// Every version of the image, so a machine still running
				// the one promoted before keeps its files after a promote.
				name, _, _ := strings.Cut(h.Root, "@")
				for _, r := range versions[name] {
					grant(fmt.Sprintf("/roots/%s/%d", r.Name, r.Version), true, h.Name)
				}
				m.Root = boot
			} else {
				p.Refused = append(p.Refused, Refusal{Host: h.Name, Reason: fmt.Sprintf("root image %q does not exist or has no promoted version", h.Root)})
			}
		}
		if h.Home != "" {
			if homes[h.Home] {
				m.Home = "/homes/" + h.Home
				grant(m.Home, false, h.Name)
			} else {
				p.Refused = append(p.Refused, Refusal{Host: h.Name, Reason: fmt.Sprintf("home %q does not exist", h.Home)})
			}
		}
		if m != (Mount{}) {
			p.Mounts[h.Name] = m
			for _, a := range addrs {
				p.Clients[a] = h.Name
			}
		}
	}

	// The pseudo-root and every directory leading to a real export.
	pseudo := map[string]map[string]bool{"/": {}}
	for name, e := range real {
		for dir := path.Dir(name); ; dir = path.Dir(dir) {
			if pseudo[dir] == nil {
				pseudo[dir] = map[string]bool{}
			}
			for c := range e.clients {
				pseudo[dir][c] = true
			}
			if dir == "/" {
				break
			}
		}
	}
	fsids := map[uint32]string{}
	add := func(name string, ps, ro bool, clients map[string]bool) error {
		id := fsid(name)
		if other, dup := fsids[id]; dup {
			return fmt.Errorf("exports %s and %s hash to the same fsid %d (rename one of them)", other, name, id)
		}
		fsids[id] = name
		e := Export{Name: name, Path: path.Join(in.ExportRoot, name), FSID: id, Pseudo: ps, ReadOnly: ro}
		for c := range clients {
			e.Clients = append(e.Clients, c)
		}
		slices.Sort(e.Clients)
		p.Exports = append(p.Exports, e)
		return nil
	}
	for name, c := range pseudo {
		if err := add(name, true, true, c); err != nil {
			return Plan{}, err
		}
	}
	for name, e := range real {
		if err := add(name, false, e.ro, e.clients); err != nil {
			return Plan{}, err
		}
	}
	slices.SortFunc(p.Exports, func(a, b Export) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range p.Exports {
		if e.Path != in.ExportRoot && !strings.HasPrefix(e.Path, in.ExportRoot+"/") {
			return Plan{}, fmt.Errorf("export %s resolves to %s outside the export root: %w", e.Name, e.Path, ErrExposesData)
		}
	}
	return p, nil
}

// rootExport picks the export name of a host's root choice.
func rootExport(choice string, versions map[string][]RootImage) (string, bool) {
	name, v, pinned := strings.Cut(choice, "@")
	for _, r := range versions[name] {
		if pinned && strconv.Itoa(r.Version) == v || !pinned && r.Promoted {
			return fmt.Sprintf("/roots/%s/%d", r.Name, r.Version), true
		}
	}
	return "", false
}

// fsid is an export's fixed filesystem id: 0 for the pseudo-root (NFSv4's
// root), otherwise a hash of its name, so file handles survive restarts.
func fsid(name string) uint32 {
	if name == "/" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	if s := h.Sum32(); s != 0 {
		return s
	}
	return 1
}

// kernelText renders what the kernel is told: exports and client addresses.
func (p Plan) kernelText() string {
	var b strings.Builder
	for _, e := range p.Exports {
		kind := "rw"
		if e.ReadOnly {
			kind = "ro"
		}
		if e.Pseudo {
			kind = "pseudo"
		}
		fmt.Fprintf(&b, "export %s %s fsid=%d %s clients=%s\n", e.Name, e.Path, e.FSID, kind, strings.Join(e.Clients, ","))
	}
	addrs := make([]netip.Addr, 0, len(p.Clients))
	for a := range p.Clients {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		fmt.Fprintf(&b, "client %s %s\n", a, p.Clients[a])
	}
	return b.String()
}

// Text renders the plan in a stable, exports(5)-like form for the golden
// files and the status: exports and client addresses (what the kernel is
// told), then what each host mounts and who is refused.
func (p Plan) Text() string {
	var b strings.Builder
	b.WriteString(p.kernelText())
	hosts := make([]string, 0, len(p.Mounts))
	for h := range p.Mounts {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		m := p.Mounts[h]
		fmt.Fprintf(&b, "mount %s root=%s home=%s\n", h, or(m.Root, "-"), or(m.Home, "-"))
	}
	for _, r := range p.Refused {
		addr := "-"
		if r.Addr.IsValid() {
			addr = r.Addr.String()
		}
		fmt.Fprintf(&b, "refused %s %s: %s\n", r.Host, addr, r.Reason)
	}
	return b.String()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
