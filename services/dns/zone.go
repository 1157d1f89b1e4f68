package dns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Record is one host to publish: a name, its IPv4 address and its aliases.
type Record struct {
	// Name is the host name, either relative to the domain ("node1") or fully
	// qualified inside it ("node1.lab.example").
	Name string
	// Addr is the host's IPv4 address (reservation or current lease); a
	// record without a valid address is skipped.
	Addr netip.Addr
	// Aliases become CNAMEs pointing at Name.
	Aliases []string
}

// ZoneSpec is everything but the records that shapes the zone.
type ZoneSpec struct {
	// Domain is the site zone, e.g. "lab.example". Empty serves reverse zones only.
	Domain string
	// Subnets give the reverse (in-addr.arpa) zones.
	Subnets []netip.Prefix
	// NSName is the name server's name, relative to Domain or fully qualified.
	NSName string
	// NSAddrs, when set, publish A records for NSName.
	NSAddrs []netip.Addr
	// TTL of every record; NegativeTTL is the SOA minimum (RFC 2308).
	TTL, NegativeTTL uint32
	// Serial is the SOA serial.
	Serial uint32
}

// Zone is an immutable, built set of authoritative data. Lookups are safe
// from many goroutines.
type Zone struct {
	// apexes are the zone apexes, lower-case FQDNs, most labels first so the
	// first suffix match is the closest enclosing zone.
	apexes []string
	soa    map[string]*dns.SOA
	nodes  map[string][]dns.RR
	// ents are empty non-terminals: names with no records but descendants.
	ents map[string]bool
}

// Answer is the result of a zone lookup.
type Answer struct {
	// Authoritative is false when the name is outside every apex.
	Authoritative bool
	Rcode         int
	Answer, Ns    []dns.RR
	Extra         []dns.RR
}

const maxReverseZonesPerSubnet = 256

// BuildZone builds the zone. It returns warnings for records it had to skip
// (bad names, conflicts) and an error only when the spec itself is unusable.
func BuildZone(spec ZoneSpec, records []Record) (*Zone, []string, error) {
	z := &Zone{soa: map[string]*dns.SOA{}, nodes: map[string][]dns.RR{}, ents: map[string]bool{}}
	var warn []string
	warnf := func(format string, args ...any) { warn = append(warn, fmt.Sprintf(format, args...)) }

	domain := ""
	if spec.Domain != "" {
		domain = dns.CanonicalName(spec.Domain)
		if _, ok := dns.IsDomainName(domain); !ok || domain == "." {
			return nil, nil, fmt.Errorf("building zone: domain %q is not a valid DNS name", spec.Domain)
		}
		z.apexes = append(z.apexes, domain)
	}
	seenApex := map[string]bool{domain: true}
	for _, p := range spec.Subnets {
		names, err := reverseZones(p)
		if err != nil {
			warnf("subnet %s: %v", p, err)
			continue
		}
		for _, n := range names {
			if !seenApex[n] {
				seenApex[n] = true
				z.apexes = append(z.apexes, n)
			}
		}
	}
	sort.SliceStable(z.apexes, func(i, j int) bool {
		return dns.CountLabel(z.apexes[i]) > dns.CountLabel(z.apexes[j])
	})

	nsName := ""
	// Without a site domain a relative NSName cannot be qualified: the server
	// then only has reverse zones, named by localhost.
	if spec.NSName != "" && (domain != "" || dns.IsFqdn(spec.NSName)) {
		var ok bool
		nsName, ok = qualify(spec.NSName, domain)
		if !ok {
			return nil, nil, fmt.Errorf("building zone: name server name %q is not a valid name inside %q", spec.NSName, spec.Domain)
		}
	} else if domain != "" {
		nsName = "ns." + domain
	} else {
		nsName = "localhost."
	}
	hostmaster := "hostmaster." + domain
	if domain == "" {
		hostmaster = "hostmaster.localhost."
	}
	for _, apex := range z.apexes {
		soa := &dns.SOA{
			Hdr:     dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: spec.TTL},
			Ns:      nsName,
			Mbox:    hostmaster,
			Serial:  spec.Serial,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  spec.NegativeTTL,
		}
		z.soa[apex] = soa
		z.nodes[apex] = append(z.nodes[apex], soa,
			&dns.NS{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: spec.TTL}, Ns: nsName})
	}

	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: spec.TTL}
	}
	// owner tracks who claimed each name, for conflict messages.
	owner := map[string]string{}
	nsAddrs := map[netip.Addr]bool{}
	if z.inZone(nsName) {
		for _, a := range spec.NSAddrs {
			if !a.Is4() {
				continue
			}
			nsAddrs[a] = true
			z.nodes[nsName] = append(z.nodes[nsName], &dns.A{Hdr: hdr(nsName, dns.TypeA), A: a.AsSlice()})
		}
		if len(nsAddrs) > 0 {
			owner[nsName] = "the name server"
		}
	}
	ptrDone := map[string]bool{}
	addPTR := func(addr netip.Addr, target string) {
		rev, err := dns.ReverseAddr(addr.String())
		if err != nil || ptrDone[rev] || !z.inZone(rev) {
			return
		}
		ptrDone[rev] = true
		z.nodes[rev] = append(z.nodes[rev], &dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: target})
	}
	for a := range nsAddrs {
		addPTR(a, nsName)
	}

	for _, r := range records {
		if domain == "" {
			break
		}
		name, ok := qualify(r.Name, domain)
		if !ok {
			warnf("host %q: not a valid host name inside %s, not published", r.Name, domain)
			continue
		}
		a := r.Addr.Unmap()
		if !a.Is4() {
			continue
		}
		if prev, taken := owner[name]; taken {
			if name == nsName && nsAddrs[a] {
				continue // the appliance itself, listed by the store too
			}
			warnf("host %q (%s): name already used by %s, not published", r.Name, a, prev)
			continue
		}
		owner[name] = "host " + a.String()
		z.nodes[name] = append(z.nodes[name], &dns.A{Hdr: hdr(name, dns.TypeA), A: a.AsSlice()})
		addPTR(a, name)
		for _, alias := range r.Aliases {
			an, ok := qualify(alias, domain)
			if !ok {
				warnf("alias %q of %q: not a valid name inside %s, not published", alias, r.Name, domain)
				continue
			}
			if prev, taken := owner[an]; taken {
				if prev != "alias of "+name {
					warnf("alias %q of %q: name already used by %s, not published", alias, r.Name, prev)
				}
				continue
			}
			owner[an] = "alias of " + name
			z.nodes[an] = append(z.nodes[an], &dns.CNAME{Hdr: hdr(an, dns.TypeCNAME), Target: name})
		}
	}

	for name := range z.nodes {
		apex, ok := z.apex(name)
		if !ok {
			continue
		}
		for p := parent(name); p != "" && p != apex && dns.IsSubDomain(apex, p); p = parent(p) {
			if _, isNode := z.nodes[p]; !isNode {
				z.ents[p] = true
			}
		}
	}
	sort.Strings(warn)
	return z, warn, nil
}

// qualify turns a host name relative to domain (or already inside it) into a
// lower-case FQDN; it accepts letters, digits, '-' and '_' in labels.
func qualify(name, domain string) (string, bool) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if n == "" || domain == "" {
		return "", false
	}
	d := strings.TrimSuffix(domain, ".")
	if n == d {
		return "", false
	}
	n = strings.TrimSuffix(n, "."+d)
	for _, l := range strings.Split(n, ".") {
		if !validLabel(l) {
			return "", false
		}
	}
	fq := n + "." + domain
	if len(fq) > 254 {
		return "", false
	}
	return fq, true
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parent returns the name with its first label removed ("" for the root).
func parent(name string) string {
	off, end := dns.NextLabel(name, 0)
	if end {
		return ""
	}
	return name[off:]
}

// reverseZones cuts an IPv4 prefix into octet-aligned in-addr.arpa apexes.
func reverseZones(p netip.Prefix) ([]string, error) {
	if !p.IsValid() || !p.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("only IPv4 subnets get a reverse zone")
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	bits := p.Bits()
	if bits < 8 {
		return nil, fmt.Errorf("prefix /%d is too wide for a reverse zone (use /8 or longer)", bits)
	}
	zbits := (bits + 7) / 8 * 8
	if zbits > 24 {
		zbits = 24
		p = netip.PrefixFrom(p.Addr(), 24).Masked()
		bits = 24
	}
	n := 1 << (zbits - bits)
	if n > maxReverseZonesPerSubnet {
		return nil, fmt.Errorf("prefix would need %d reverse zones", n)
	}
	a4 := p.Addr().As4()
	base := binary.BigEndian.Uint32(a4[:])
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		v := base + uint32(i)<<(32-zbits)
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		var sb strings.Builder
		for k := zbits/8 - 1; k >= 0; k-- {
			sb.WriteString(strconv.Itoa(int(b[k])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		out = append(out, sb.String())
	}
	return out, nil
}

// apex returns the closest enclosing apex of a lower-case FQDN.
func (z *Zone) apex(name string) (string, bool) {
	for _, a := range z.apexes {
		if dns.IsSubDomain(a, name) {
			return a, true
		}
	}
	return "", false
}

func (z *Zone) inZone(name string) bool {
	_, ok := z.apex(name)
	return ok
}

// Apexes returns the zone apexes, closest (most labels) first.
func (z *Zone) Apexes() []string { return append([]string(nil), z.apexes...) }

// maxChase bounds CNAME chains inside the zone.
const maxChase = 8

// Lookup answers a question from the zone. Records returned are copies the
// caller may modify.
func (z *Zone) Lookup(qname string, qtype uint16) Answer {
	name := dns.CanonicalName(qname)
	apex, ok := z.apex(name)
	if !ok {
		return Answer{}
	}
	ans := Answer{Authoritative: true, Rcode: dns.RcodeSuccess}
	negative := func(rcode int) Answer {
		ans.Rcode = rcode
		soa := dns.Copy(z.soa[apex]).(*dns.SOA)
		if soa.Minttl < soa.Hdr.Ttl {
			soa.Hdr.Ttl = soa.Minttl
		}
		ans.Ns = []dns.RR{soa}
		return ans
	}
	for i := 0; i < maxChase; i++ {
		rrs, exists := z.nodes[name]
		if !exists {
			if z.ents[name] {
				return negative(dns.RcodeSuccess)
			}
			return negative(dns.RcodeNameError)
		}
		if qtype != dns.TypeCNAME && qtype != dns.TypeANY {
			if c, ok := rrs[0].(*dns.CNAME); ok {
				ans.Answer = append(ans.Answer, dns.Copy(c))
				next, inside := z.apex(c.Target)
				if !inside {
					return ans
				}
				name, apex = c.Target, next
				continue
			}
		}
		var matched []dns.RR
		for _, rr := range rrs {
			if qtype == dns.TypeANY || rr.Header().Rrtype == qtype {
				matched = append(matched, dns.Copy(rr))
			}
		}
		if len(matched) == 0 {
			return negative(dns.RcodeSuccess)
		}
		ans.Answer = append(ans.Answer, matched...)
		if qtype == dns.TypeNS {
			for _, rr := range matched {
				for _, g := range z.nodes[rr.(*dns.NS).Ns] {
					if g.Header().Rrtype == dns.TypeA {
						ans.Extra = append(ans.Extra, dns.Copy(g))
					}
				}
			}
		}
		return ans
	}
	// A CNAME loop cannot be built from records (aliases point at hosts), but
	// stay safe.
	ans.Rcode = dns.RcodeServerFailure
	return ans
}
