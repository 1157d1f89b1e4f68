package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"

	"kiln.dev/kiln/services/config"
)

// Names in the kiln table other code may refer to.
const (
	// Table is the inet table kiln owns; nothing else in the ruleset is touched.
	Table = "kiln"
	// Ban4Set and Ban6Set hold banned source addresses with a timeout each.
	Ban4Set = "ban4"
	Ban6Set = "ban6"
	// MasqueradeSet holds the provisioning hosts allowed out through the upstream.
	MasqueradeSet = "masquerade4"
	// markerPrefix starts the comment of the first input rule: it carries the
	// ruleset's hash, so applying an unchanged ruleset can be skipped.
	markerPrefix = "kiln ruleset "
)

// ICMP echo requests accepted per second (and burst) on every interface.
const (
	echoRate  = 10
	echoBurst = 20
)

// ErrNotConfigured is returned by Render for a config without network.interfaces:
// without roles a firewall would only lock the operator out.
var ErrNotConfigured = errors.New("network.interfaces is empty: kiln applies no firewall")

// Ruleset is the whole kiln table, rendered from a config. It is the same
// for Text (nft syntax, golden files) and Apply (netlink objects).
type Ruleset struct {
	helper bool
	sets   []setDef
	chains []chainDef
	hash   string
}

type setDef struct {
	name    string
	ip6     bool
	timeout bool
	elems   []netip.Addr
}

type baseChain struct {
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	hookName string
	prio     *nftables.ChainPriority
	prioName string
	policy   nftables.ChainPolicy
}

type chainDef struct {
	name  string
	base  *baseChain // nil for a regular chain (a jump target)
	rules []ruleDef
}

type ruleDef struct {
	stmts   []stmt
	comment string
}

func rule(s ...stmt) ruleDef { return ruleDef{stmts: s} }

// Render computes the ruleset for a validated config. It is pure.
//
// Input: loopback, then banned sources are dropped (even mid-connection),
// replies are accepted, invalid packets dropped, ICMP echo is rate limited,
// IPv6 neighbour discovery accepted, and each interface jumps to its role's
// chain: management accepts the API/UI ports, provisioning the provisioning
// services' ports, upstream nothing new. Everything else is counted and
// dropped. Forward drops all but masqueraded provisioning hosts.
func Render(c config.Config) (*Ruleset, error) {
	n := c.Network
	if !n.Configured() {
		return nil, ErrNotConfigured
	}
	r := &Ruleset{}
	masq := c.Firewall.MasqueradeHosts()
	ups := n.WithRole(config.RoleUpstream)
	if len(masq) > 0 && len(ups) == 0 {
		return nil, fmt.Errorf("firewall.masquerade.hosts: masquerade needs an upstream interface")
	}
	r.helper = len(masq) > 0
	r.sets = append(r.sets, setDef{name: Ban4Set, timeout: true}, setDef{name: Ban6Set, ip6: true, timeout: true})
	if len(masq) > 0 {
		r.sets = append(r.sets, setDef{name: MasqueradeSet, elems: masq})
	}

	var mgmtRules, provRules []ruleDef
	for _, p := range []int{c.Management.HTTPSPort, c.Management.HTTPPort} {
		if p != 0 {
			mgmtRules = append(mgmtRules, rule(dport("tcp", p), accept()))
		}
	}
	for _, p := range config.ProvisioningPorts(c.Provisioning) {
		provRules = append(provRules, rule(dport(p.Proto, p.Port), accept()))
	}

	input := chainDef{name: "input", base: &baseChain{
		typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, hookName: "input",
		prio: nftables.ChainPriorityFilter, prioName: "filter", policy: nftables.ChainPolicyDrop,
	}}
	input.rules = []ruleDef{
		rule(iifname("lo"), accept()),
		rule(saddrIn(Ban4Set, false), counter(), drop()),
		rule(saddrIn(Ban6Set, true), counter(), drop()),
		rule(ctState(ctEstablished|ctRelated), accept()),
		// Neighbour discovery before the invalid check: conntrack does not track it.
		rule(icmpv6Type(icmpv6NeighSolic), accept()),
		rule(icmpv6Type(icmpv6NeighAdvert), accept()),
		rule(icmpv6Type(icmpv6RouterSolic), accept()),
		rule(icmpv6Type(icmpv6RouterAdvert), accept()),
		rule(ctState(ctInvalid), counter(), drop()),
		rule(icmpEcho(), limit(echoRate, echoBurst), accept()),
		rule(icmpv6Type(icmpv6EchoRequest), limit(echoRate, echoBurst), accept()),
	}
	used := map[string]bool{}
	for _, itf := range n.Interfaces {
		switch itf.Role {
		case config.RoleManagement, config.RoleProvisioning:
			input.rules = append(input.rules, rule(iifname(itf.Name), jump(itf.Role)))
			used[itf.Role] = true
		}
	}
	input.rules = append(input.rules, rule(counter(), drop()))

	forward := chainDef{name: "forward", base: &baseChain{
		typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, hookName: "forward",
		prio: nftables.ChainPriorityFilter, prioName: "filter", policy: nftables.ChainPolicyDrop,
	}}
	forward.rules = []ruleDef{rule(ctState(ctEstablished|ctRelated), accept())}
	if len(masq) > 0 {
		up := ups[0].Name
		for _, p := range n.WithRole(config.RoleProvisioning) {
			forward.rules = append(forward.rules,
				// TFTP's data comes from a new server port: the helper expects it through the NAT.
				rule(iifname(p.Name), oifname(up), dport("udp", 69), ctHelperSet("tftp")),
				rule(iifname(p.Name), oifname(up), saddrIn(MasqueradeSet, false), accept()))
		}
	}
	forward.rules = append(forward.rules, rule(counter(), drop()))

	if used[config.RoleManagement] {
		r.chains = append(r.chains, chainDef{name: config.RoleManagement, rules: mgmtRules})
	}
	if used[config.RoleProvisioning] {
		r.chains = append(r.chains, chainDef{name: config.RoleProvisioning, rules: provRules})
	}
	r.chains = append(r.chains, input, forward)
	if len(masq) > 0 {
		r.chains = append(r.chains, chainDef{
			name: "postrouting",
			base: &baseChain{
				typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, hookName: "postrouting",
				prio: nftables.ChainPriorityNATSource, prioName: "srcnat", policy: nftables.ChainPolicyAccept,
			},
			rules: []ruleDef{rule(oifname(ups[0].Name), saddrIn(MasqueradeSet, false), masquerade())},
		})
	}
	sum := sha256.Sum256([]byte(r.text()))
	r.hash = hex.EncodeToString(sum[:8])
	for i := range r.chains {
		if r.chains[i].name == "input" {
			r.chains[i].rules[0].comment = markerPrefix + r.hash
		}
	}
	return r, nil
}

// Hash identifies the ruleset; it is in the comment of the first input rule.
func (r *Ruleset) Hash() string { return r.hash }

// Text renders the table in nft(8) syntax (what `nft -f` reads).
func (r *Ruleset) Text() string { return r.text() }

func (r *Ruleset) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	sep := ""
	if r.helper {
		b.WriteString("\tct helper tftp {\n\t\ttype \"tftp\" protocol udp\n\t\tl3proto inet\n\t}\n")
		sep = "\n"
	}
	for _, s := range r.sets {
		b.WriteString(sep)
		sep = "\n"
		typ := "ipv4_addr"
		if s.ip6 {
			typ = "ipv6_addr"
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.name, typ)
		if s.timeout {
			b.WriteString("\t\tflags timeout\n")
		}
		if len(s.elems) > 0 {
			els := make([]string, len(s.elems))
			for i, e := range s.elems {
				els[i] = e.String()
			}
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(els, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range r.chains {
		b.WriteString(sep)
		sep = "\n"
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.base != nil {
			policy := "accept"
			if c.base.policy == nftables.ChainPolicyDrop {
				policy = "drop"
			}
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", c.base.typ, c.base.hookName, c.base.prioName, policy)
		}
		for _, ru := range c.rules {
			parts := make([]string, 0, len(ru.stmts)+1)
			for _, s := range ru.stmts {
				parts = append(parts, s.text)
			}
			if ru.comment != "" {
				parts = append(parts, fmt.Sprintf("comment %q", ru.comment))
			}
			fmt.Fprintf(&b, "\t\t%s\n", strings.Join(parts, " "))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
