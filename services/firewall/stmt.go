package firewall

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A stmt is one nft statement in both forms: the text nft(8) reads and the
// kernel expressions google/nftables sends. Rules are built only from these
// constructors, so the golden text and the applied objects cannot drift apart
// (a tier-3 test also compares what the kernel lists for both).
type stmt struct {
	text  string
	exprs func(sets map[string]*nftables.Set) []expr.Any
}

func fixed(text string, e ...expr.Any) stmt {
	return stmt{text: text, exprs: func(map[string]*nftables.Set) []expr.Any { return e }}
}

// Conntrack state bits (nf_conntrack_common.h).
const (
	ctInvalid     = 1
	ctEstablished = 2
	ctRelated     = 4
)

func ifnameBytes(name string) []byte {
	b := make([]byte, 16) // IFNAMSIZ, NUL padded as nft sends it
	copy(b, name)
	return b
}

func iifname(name string) stmt {
	return fixed(fmt.Sprintf("iifname %q", name),
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)})
}

func oifname(name string) stmt {
	return fixed(fmt.Sprintf("oifname %q", name),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)})
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// saddrIn matches the IPv4 (or IPv6) source address against a named set.
func saddrIn(set string, ip6 bool) stmt {
	family, proto, off, n := "ip", byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if ip6 {
		family, proto, off, n = "ip6", unix.NFPROTO_IPV6, 8, 16
	}
	return stmt{
		text: fmt.Sprintf("%s saddr @%s", family, set),
		exprs: func(sets map[string]*nftables.Set) []expr.Any {
			s := sets[set]
			return append(nfproto(proto),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
		},
	}
}

func ctState(bits uint32) stmt {
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{ctEstablished, "established"}, {ctRelated, "related"}, {ctInvalid, "invalid"}} {
		if bits&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bits)
	return fixed("ct state "+strings.Join(names, ","),
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

// ICMP types.
const (
	icmpEchoRequest    = 8
	icmpv6EchoRequest  = 128
	icmpv6RouterSolic  = 133
	icmpv6RouterAdvert = 134
	icmpv6NeighSolic   = 135
	icmpv6NeighAdvert  = 136
)

var icmpv6Names = map[byte]string{
	icmpv6EchoRequest:  "echo-request",
	icmpv6RouterSolic:  "nd-router-solicit",
	icmpv6RouterAdvert: "nd-router-advert",
	icmpv6NeighSolic:   "nd-neighbor-solicit",
	icmpv6NeighAdvert:  "nd-neighbor-advert",
}

func icmpEcho() stmt {
	e := append(nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_ICMP)...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmpEchoRequest}})
	return fixed("icmp type echo-request", e...)
}

func icmpv6Type(t byte) stmt {
	e := append(nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6)...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{t}})
	return fixed("icmpv6 type "+icmpv6Names[t], e...)
}

// dport matches a TCP or UDP destination port.
func dport(proto string, port int) stmt {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(port))
	e := append(l4proto(p),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b})
	return fixed(fmt.Sprintf("%s dport %d", proto, port), e...)
}

// limit accepts at most rate packets per second with a burst.
func limit(rate uint64, burst uint32) stmt {
	return fixed(fmt.Sprintf("limit rate %d/second burst %d packets", rate, burst),
		&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: expr.LimitTimeSecond, Burst: burst})
}

func counter() stmt { return fixed("counter", &expr.Counter{}) }

func accept() stmt { return fixed("accept", &expr.Verdict{Kind: expr.VerdictAccept}) }

func drop() stmt { return fixed("drop", &expr.Verdict{Kind: expr.VerdictDrop}) }

func jump(chain string) stmt {
	return fixed("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

func ctHelperSet(name string) stmt {
	return fixed(fmt.Sprintf("ct helper set %q", name), &expr.Objref{Type: int(nftables.ObjTypeCtHelper), Name: name})
}

func masquerade() stmt { return fixed("masquerade", &expr.Masq{}) }
