package iscsi

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// HBA is the fileio HBA index whose backstores are kiln's
// (configfs target/core/fileio_3260): everything below it is managed, and
// what the desired state lacks there is removed.
const HBA = 3260

// TPG is the one target portal group of every kiln target (tpgt_1).
const TPG = 1

// State is the LIO configuration kiln owns: its backstores and targets.
// Desired computes it from the database and config; Observe reads it from
// configfs. Lists are sorted, so two equal states compare equal.
type State struct {
	Backstores []Backstore
	Targets    []Target
}

// Backstore is one fileio device: a volume's sparse file.
type Backstore struct {
	Name   string // configfs directory name: the volume's "<host>.<volume>"
	File   string // absolute path of the backing file
	Size   int64  // bytes the initiator sees
	Serial string // SCSI unit serial (VPD 0x80)
}

// Target is one host's iSCSI target with its single TPG.
type Target struct {
	IQN     string
	Portals []netip.AddrPort
	LUNs    []LUN
	ACLs    []ACL
	// Attrib and Param hold the TPG settings that matter to kiln (see
	// tpgAttrib and tpgParam); Enabled is the TPG's enable.
	Attrib  map[string]string
	Param   map[string]string
	Enabled bool
}

// LUN exports a backstore under a LUN number.
type LUN struct {
	Index     int
	Backstore string
}

// ACL admits one initiator with CHAP credentials and maps the target's
// LUNs to it under the same numbers.
type ACL struct {
	Initiator string
	CHAP      CHAP
	// LUNs are the mapped LUN numbers.
	LUNs []int
}

// CHAP is what an initiator must prove (UserID, Password) and, for mutual
// CHAP, what the target proves back (MutualUserID, MutualPassword; empty:
// one-way). LIO needs them in cleartext to compute the responses.
type CHAP struct {
	UserID, Password             string
	MutualUserID, MutualPassword string
}

// tpgAttrib are the TPG attributes kiln sets: CHAP enforced, no
// auto-generated ACLs (an initiator without an ACL is refused), discovery
// shows an initiator only the targets that list it, and no writable demo mode.
var tpgAttrib = map[string]string{
	"authentication":          "1",
	"generate_node_acls":      "0",
	"cache_dynamic_acls":      "0",
	"demo_mode_write_protect": "1",
	"prod_mode_write_protect": "0",
	"demo_mode_discovery":     "0",
}

// tpgParam are the TPG's login parameters kiln sets: CHAP only, never None.
var tpgParam = map[string]string{"AuthMethod": "CHAP"}

// Volume is one volume exported to its host.
type Volume struct {
	Host, Name string
	File       string
	Size       int64
}

// Initiator is a host allowed to log in to its target.
type Initiator struct {
	Host string
	IQN  string
	CHAP CHAP
}

// Inputs is everything the desired state depends on.
type Inputs struct {
	Names      Names
	Portals    []netip.AddrPort
	Initiators []Initiator
	Volumes    []Volume
}

// Desired is the LIO state for in: one target per host that has both an
// initiator and at least one volume, its volumes as LUNs 0, 1, … in name
// order, its initiator's ACL with CHAP, and a portal on every provisioning
// address. A host with volumes but no initiator record gets no target (it
// could not log in). Desired is pure: the same inputs give the same state.
func Desired(in Inputs) (State, error) {
	var st State
	inits := map[string]Initiator{}
	for _, i := range in.Initiators {
		if err := CheckIQN(i.IQN); err != nil {
			return State{}, fmt.Errorf("host %s: initiator: %w", i.Host, err)
		}
		if i.CHAP.UserID == "" || i.CHAP.Password == "" {
			return State{}, fmt.Errorf("host %s: initiator %s has no CHAP secret", i.Host, i.IQN)
		}
		inits[i.Host] = i
	}
	vols := slices.Clone(in.Volumes)
	slices.SortFunc(vols, func(a, b Volume) int {
		return strings.Compare(a.Host+"\x00"+a.Name, b.Host+"\x00"+b.Name)
	})
	portals := slices.Clone(in.Portals)
	slices.SortFunc(portals, netip.AddrPort.Compare)
	portals = slices.Compact(portals)
	byHost := map[string]*Target{}
	var hosts []string
	for _, v := range vols {
		ini, ok := inits[v.Host]
		if !ok {
			continue
		}
		t := byHost[v.Host]
		if t == nil {
			iqn := in.Names.Target(v.Host)
			if err := CheckIQN(iqn); err != nil {
				return State{}, fmt.Errorf("host %s: target: %w", v.Host, err)
			}
			t = &Target{IQN: iqn, Portals: portals, Attrib: maps.Clone(tpgAttrib), Param: maps.Clone(tpgParam), Enabled: true,
				ACLs: []ACL{{Initiator: ini.IQN, CHAP: ini.CHAP}}}
			byHost[v.Host] = t
			hosts = append(hosts, v.Host)
		}
		name := Serial(v.Host, v.Name)
		lun := len(t.LUNs)
		t.LUNs = append(t.LUNs, LUN{Index: lun, Backstore: name})
		t.ACLs[0].LUNs = append(t.ACLs[0].LUNs, lun)
		st.Backstores = append(st.Backstores, Backstore{Name: name, File: v.File, Size: v.Size, Serial: name})
	}
	for _, h := range hosts {
		st.Targets = append(st.Targets, *byHost[h])
	}
	st.sort()
	return st, nil
}

// sort orders every list so equal states compare equal.
func (s *State) sort() {
	slices.SortFunc(s.Backstores, func(a, b Backstore) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Targets, func(a, b Target) int { return strings.Compare(a.IQN, b.IQN) })
	for i := range s.Targets {
		t := &s.Targets[i]
		slices.SortFunc(t.Portals, netip.AddrPort.Compare)
		slices.SortFunc(t.LUNs, func(a, b LUN) int { return a.Index - b.Index })
		slices.SortFunc(t.ACLs, func(a, b ACL) int { return strings.Compare(a.Initiator, b.Initiator) })
		for j := range t.ACLs {
			slices.Sort(t.ACLs[j].LUNs)
		}
	}
}

// Portals returns the addresses the target listens on: the local addresses
// inside a provisioning subnet, at port. Management and other addresses
// never get a portal.
func Portals(subnets []netip.Prefix, local []netip.Addr, port uint16) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range local {
		a = a.Unmap()
		if slices.ContainsFunc(subnets, func(p netip.Prefix) bool { return p.Contains(a) }) {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}
