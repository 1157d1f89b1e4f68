package netconf

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"kiln.dev/kiln/services/config"
)

// Alias marks links kiln created (VLANs, bridges): only those are deleted
// when they leave the config.
const Alias = "kiln"

// RouteProtocol tags the routes kiln installs from network.routes (rtnetlink
// protocol number; /etc/iproute2/rt_protos names it "kiln" if you add it).
// Routes with another protocol (kernel, DHCP, the operator's) are never touched.
const RouteProtocol = 77

// Link is an observed link.
type Link struct {
	Index   int
	Name    string
	MAC     string // lower-case colon form, "" if none
	Kind    string // rtnetlink kind: device, veth, vlan, bridge, dummy…
	Parent  int    // a vlan's parent link index
	VLAN    int    // a vlan's id
	Master  int    // the bridge it is enslaved to, 0 if none
	MTU     int
	Up      bool // administratively up
	Alias   string
	Addrs   []Addr
	Carrier bool   // status only: IFF_LOWER_UP
	State   string // status only: operstate (up, down, lowerlayerdown…)
}

// Addr is an address on a link.
type Addr struct {
	Prefix netip.Prefix
	// Dynamic addresses have a finite lifetime (a DHCP lease, SLAAC): they
	// are not kiln's static state and never removed by a plan.
	Dynamic bool
}

// Route is an observed route with RouteProtocol in the main table.
type Route struct {
	Dst    netip.Prefix
	Gw     netip.Addr
	Link   int
	Metric int
}

// Observed is what the kernel has.
type Observed struct {
	Links  []Link
	Routes []Route
}

// Op is what a plan step does.
type Op string

// Plan steps, in the order they are applied.
const (
	OpDelete       Op = "delete"        // delete a link kiln created (Link)
	OpRename       Op = "rename"        // set Link down and rename it to To
	OpCreateBridge Op = "create-bridge" // create bridge Link
	OpCreateVLAN   Op = "create-vlan"   // create vlan Link on To with id VLAN
	OpNoMaster     Op = "no-master"     // take Link out of its bridge
	OpSetMaster    Op = "set-master"    // enslave Link to bridge To
	OpSetMTU       Op = "set-mtu"       // set Link's MTU
	OpDelAddr      Op = "del-addr"      // remove Prefix from Link
	OpAddAddr      Op = "add-addr"      // add Prefix to Link
	OpUp           Op = "up"            // set Link up
	OpDelRoute     Op = "del-route"     // remove route Prefix via Gw dev Link metric Metric
	OpAddRoute     Op = "add-route"     // add that route
)

// Step is one change. Link names are the names at the time the step runs.
type Step struct {
	Op     Op
	Link   string
	To     string
	VLAN   int
	MTU    int
	Prefix netip.Prefix
	Gw     netip.Addr
	Metric int
}

func (s Step) String() string {
	switch s.Op {
	case OpRename:
		return fmt.Sprintf("rename %s to %s", s.Link, s.To)
	case OpCreateVLAN:
		return fmt.Sprintf("create-vlan %s parent %s id %d", s.Link, s.To, s.VLAN)
	case OpSetMaster:
		return fmt.Sprintf("set-master %s %s", s.Link, s.To)
	case OpSetMTU:
		return fmt.Sprintf("set-mtu %s %d", s.Link, s.MTU)
	case OpDelAddr, OpAddAddr:
		return fmt.Sprintf("%s %s %s", s.Op, s.Link, s.Prefix)
	case OpDelRoute, OpAddRoute:
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", s.Op, s.Prefix)
		if s.Gw.IsValid() {
			fmt.Fprintf(&b, " via %s", s.Gw)
		}
		if s.Link != "" {
			fmt.Fprintf(&b, " dev %s", s.Link)
		}
		fmt.Fprintf(&b, " metric %d", s.Metric)
		return b.String()
	default:
		return fmt.Sprintf("%s %s", s.Op, s.Link)
	}
}

// Plan is the ordered list of steps that turns the observed state into the
// desired one; empty when they already agree.
type Plan []Step

func (p Plan) String() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Strings returns one line per step.
func (p Plan) Strings() []string {
	out := make([]string, len(p))
	for i, s := range p {
		out[i] = s.String()
	}
	return out
}

// PlanError is a config that cannot be applied to the links present; it
// names the config field, like config.FieldError.
type PlanError = config.FieldError

// physical reports whether a link kind can be matched by MAC (it is not a
// virtual link that copies another's address).
func physical(kind string) bool {
	switch kind {
	case "device", "veth", "dummy", "":
		return true
	}
	return false
}

// linkKind maps a config kind to the rtnetlink kind.
func linkKind(k string) string {
	switch k {
	case config.KindVLAN:
		return "vlan"
	case config.KindBridge:
		return "bridge"
	}
	return ""
}

// MakePlan computes the steps that make obs match n. It is pure and checks
// everything before returning, so an error means nothing must be applied.
// Links not in n are left alone, except links kiln created (Alias) that n
// no longer lists, which are deleted.
func MakePlan(n config.Network, obs Observed) (Plan, error) {
	byIndex := map[int]*Link{}
	byName := map[string]*Link{}
	for i := range obs.Links {
		l := &obs.Links[i]
		byIndex[l.Index] = l
		byName[l.Name] = l
	}
	nameOf := func(idx int) string {
		if l := byIndex[idx]; l != nil {
			return l.Name
		}
		return ""
	}
	field := func(i int, f string) string { return fmt.Sprintf("network.interfaces[%d].%s", i, f) }

	var deletes, renames, creates, masters, mtus, addrDels, addrAdds, ups, routeDels, routeAdds Plan
	// cur maps each config interface to the observed link it is (nil: to be created).
	cur := make([]*Link, len(n.Interfaces))
	claimed := map[int]int{} // link index -> config index
	deleted := map[int]bool{}
	wanted := map[string]bool{}
	for _, itf := range n.Interfaces {
		wanted[itf.Name] = true
	}

	// Ethernet interfaces: find them by MAC, else by name.
	for i, itf := range n.Interfaces {
		if itf.KindOrDefault() != config.KindEthernet {
			continue
		}
		var l *Link
		if mac := itf.HardwareAddr(); mac != nil {
			var found []*Link
			var all []string
			for j := range obs.Links {
				o := &obs.Links[j]
				if physical(o.Kind) && o.MAC != "" {
					all = append(all, o.Name+" "+o.MAC)
					if o.MAC == mac.String() {
						found = append(found, o)
					}
				}
			}
			switch len(found) {
			case 0:
				return nil, &PlanError{Field: field(i, "mac"), Problem: fmt.Sprintf("no link has MAC %s", mac),
					Fix: fmt.Sprintf("check the MAC against the NICs present (%s)", strings.Join(all, ", "))}
			case 1:
				l = found[0]
			default:
				return nil, &PlanError{Field: field(i, "mac"), Problem: fmt.Sprintf("%d links have MAC %s", len(found), mac),
					Fix: "match this NIC by name instead"}
			}
		} else {
			l = byName[itf.Name]
			if l == nil {
				return nil, &PlanError{Field: field(i, "name"), Problem: fmt.Sprintf("no link is called %q", itf.Name),
					Fix: "check the name with `ip link`, or match the NIC by mac"}
			}
		}
		if j, dup := claimed[l.Index]; dup {
			return nil, &PlanError{Field: field(i, "mac"), Problem: fmt.Sprintf("link %s is also network.interfaces[%d]", l.Name, j),
				Fix: "list each NIC once"}
		}
		claimed[l.Index] = i
		cur[i] = l
	}

	// Links kiln created that are no longer wanted, or whose name an
	// ethernet interface takes, go first.
	isOurs := func(l *Link) bool { return l.Alias == Alias && (l.Kind == "vlan" || l.Kind == "bridge") }
	wantedKind := map[string]string{}
	for _, itf := range n.Interfaces {
		wantedKind[itf.Name] = itf.KindOrDefault()
	}
	for i := range obs.Links {
		l := &obs.Links[i]
		if _, c := claimed[l.Index]; c || !isOurs(l) {
			continue
		}
		if k, ok := wantedKind[l.Name]; !ok || k == config.KindEthernet {
			deletes = append(deletes, Step{Op: OpDelete, Link: l.Name})
			deleted[l.Index] = true
		}
	}

	// Bridges, then vlans (whose parent may be a bridge): keep a matching
	// link, recreate one of kiln's that does not match.
	for _, pass := range []string{config.KindBridge, config.KindVLAN} {
		for i, itf := range n.Interfaces {
			kind := itf.KindOrDefault()
			if kind != pass {
				continue
			}
			l := byName[itf.Name]
			if l == nil || deleted[l.Index] {
				continue
			}
			if j, c := claimed[l.Index]; c {
				return nil, &PlanError{Field: field(i, "name"), Problem: fmt.Sprintf("%q is the name the NIC of network.interfaces[%d] has now", itf.Name, j),
					Fix: "give the " + kind + " another name"}
			}
			ok := l.Kind == linkKind(kind)
			if ok && kind == config.KindVLAN {
				ok = false
				for j, c := range n.Interfaces {
					if c.Name == itf.Parent && cur[j] != nil {
						ok = l.VLAN == itf.VLAN && l.Parent == cur[j].Index
					}
				}
			}
			switch {
			case ok:
				cur[i] = l
				claimed[l.Index] = i
			case isOurs(l):
				deletes = append(deletes, Step{Op: OpDelete, Link: l.Name})
				deleted[l.Index] = true
			default:
				return nil, &PlanError{Field: field(i, "name"), Problem: fmt.Sprintf("a %s link called %q exists and kiln did not create it", orUnknown(l.Kind), itf.Name),
					Fix: "remove that link, or choose another name"}
			}
		}
	}

	// Renames, via a temporary name when the target is taken by a link that
	// is itself being renamed.
	type ren struct{ from, to string }
	var rs []ren
	renaming := map[string]bool{} // current names that move away
	for i, itf := range n.Interfaces {
		if l := cur[i]; l != nil && l.Name != itf.Name {
			rs = append(rs, ren{l.Name, itf.Name})
			renaming[l.Name] = true
		}
	}
	var second Plan
	for _, r := range rs {
		holder := byName[r.to]
		switch {
		case holder == nil || deleted[holder.Index]:
			renames = append(renames, Step{Op: OpRename, Link: r.from, To: r.to})
		case renaming[r.to]:
			tmp := fmt.Sprintf("kiln%d", byName[r.from].Index)
			renames = append(renames, Step{Op: OpRename, Link: r.from, To: tmp})
			second = append(second, Step{Op: OpRename, Link: tmp, To: r.to})
		default:
			i := claimed[byName[r.from].Index]
			return nil, &PlanError{Field: field(i, "name"), Problem: fmt.Sprintf("link %s (MAC %s) cannot be renamed %q: another link has that name", r.from, byName[r.from].MAC, r.to),
				Fix: "choose a name no other link has, or list that link too"}
		}
	}
	renames = append(renames, second...)

	// Creations: bridges, then vlans (their parent may be a bridge).
	for i, itf := range n.Interfaces {
		if cur[i] == nil && itf.KindOrDefault() == config.KindBridge {
			creates = append(creates, Step{Op: OpCreateBridge, Link: itf.Name})
		}
	}
	for i, itf := range n.Interfaces {
		if cur[i] == nil && itf.KindOrDefault() == config.KindVLAN {
			creates = append(creates, Step{Op: OpCreateVLAN, Link: itf.Name, To: itf.Parent, VLAN: itf.VLAN})
		}
	}

	// Bridge membership.
	master := map[string]string{}
	for _, itf := range n.Interfaces {
		for _, m := range itf.Members {
			master[m] = itf.Name
		}
	}
	for i, itf := range n.Interfaces {
		want := master[itf.Name]
		have := ""
		if l := cur[i]; l != nil && l.Master != 0 {
			have = nameOf(l.Master)
			if ml := byIndex[l.Master]; ml != nil && deleted[ml.Index] {
				have = ""
			}
		}
		switch {
		case want == have:
		case want == "":
			masters = append(masters, Step{Op: OpNoMaster, Link: itf.Name})
		default:
			masters = append(masters, Step{Op: OpSetMaster, Link: itf.Name, To: want})
		}
	}
	// Unlisted links still in a bridge kiln deletes are freed by the deletion.

	// MTU (parents before vlans), addresses, up.
	order := func(pass func(kind string) bool, f func(i int, itf config.Interface)) {
		for i, itf := range n.Interfaces {
			if pass(itf.KindOrDefault()) {
				f(i, itf)
			}
		}
	}
	notVLAN := func(k string) bool { return k != config.KindVLAN }
	isVLAN := func(k string) bool { return k == config.KindVLAN }
	for _, pass := range []func(string) bool{notVLAN, isVLAN} {
		order(pass, func(i int, itf config.Interface) {
			if itf.MTU != 0 && (cur[i] == nil || cur[i].MTU != itf.MTU) {
				mtus = append(mtus, Step{Op: OpSetMTU, Link: itf.Name, MTU: itf.MTU})
			}
		})
	}
	for i, itf := range n.Interfaces {
		want := itf.Prefixes()
		var have []Addr
		if cur[i] != nil {
			have = cur[i].Addrs
		}
		for _, a := range have {
			if a.Dynamic || a.Prefix.Addr().IsLinkLocalUnicast() || slices.Contains(want, a.Prefix) {
				continue
			}
			addrDels = append(addrDels, Step{Op: OpDelAddr, Link: itf.Name, Prefix: a.Prefix})
		}
		for _, w := range want {
			if !slices.ContainsFunc(have, func(a Addr) bool { return a.Prefix == w }) {
				addrAdds = append(addrAdds, Step{Op: OpAddAddr, Link: itf.Name, Prefix: w})
			}
		}
	}
	if lo := byName["lo"]; lo != nil && !lo.Up {
		ups = append(ups, Step{Op: OpUp, Link: "lo"})
	}
	for _, pass := range []func(string) bool{notVLAN, isVLAN} {
		order(pass, func(i int, itf config.Interface) {
			// A rename takes the link down; a new link starts down.
			if l := cur[i]; l == nil || !l.Up || l.Name != itf.Name {
				ups = append(ups, Step{Op: OpUp, Link: itf.Name})
			}
		})
	}

	// Routes tagged RouteProtocol.
	type rkey struct {
		dst    netip.Prefix
		gw     netip.Addr
		link   string
		metric int
	}
	var want []rkey
	for _, r := range n.Routes {
		k := rkey{dst: r.Dst(), gw: r.Gateway(), link: r.Interface, metric: r.Metric}
		if k.dst.Addr().Is6() && k.metric == 0 {
			k.metric = 1024 // the kernel's default IPv6 metric
		}
		if k.link == "" {
			// Pin the route to the interface whose subnet holds the gateway,
			// so the plan is stable once the kernel has chosen it.
			for _, itf := range n.Interfaces {
				for _, p := range itf.Prefixes() {
					if k.link == "" && p.Masked().Contains(k.gw) {
						k.link = itf.Name
					}
				}
			}
		}
		want = append(want, k)
	}
	// Observed link names after the renames above.
	finalName := func(idx int) string {
		if i, ok := claimed[idx]; ok {
			return n.Interfaces[i].Name
		}
		return nameOf(idx)
	}
	var have []rkey
	for _, r := range obs.Routes {
		if !deleted[r.Link] { // routes leave with their link
			have = append(have, rkey{r.Dst, r.Gw, finalName(r.Link), r.Metric})
		}
	}
	matches := func(w, h rkey) bool {
		return w.dst == h.dst && w.gw == h.gw && w.metric == h.metric && (w.link == "" || w.link == h.link)
	}
	for _, h := range have {
		if !slices.ContainsFunc(want, func(w rkey) bool { return matches(w, h) }) {
			routeDels = append(routeDels, Step{Op: OpDelRoute, Link: h.link, Prefix: h.dst, Gw: h.gw, Metric: h.metric})
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h rkey) bool { return matches(w, h) }) {
			routeAdds = append(routeAdds, Step{Op: OpAddRoute, Link: w.link, Prefix: w.dst, Gw: w.gw, Metric: w.metric})
		}
	}

	sort.SliceStable(deletes, func(i, j int) bool { return deletes[i].Link < deletes[j].Link })
	var p Plan
	for _, part := range []Plan{deletes, renames, creates, masters, mtus, addrDels, addrAdds, ups, routeDels, routeAdds} {
		p = append(p, part...)
	}
	return p, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "network"
	}
	return s
}
