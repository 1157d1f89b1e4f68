// Package resolvconf renders /etc/resolv.conf for both writers of it: the
// live image's boot-time DHCP (init/bootnet) and the appliance's network
// plane (services/netconf).
package resolvconf

import (
	"slices"
	"strings"
)

// MaxServers is how many nameserver lines libc reads.
const MaxServers = 3

// Render returns resolv.conf with a "# "+by comment line, the search domains
// and the first MaxServers servers, in the order given, without duplicates.
func Render(by string, servers, search []string) string {
	var b strings.Builder
	b.WriteString("# " + by + "\n")
	if search = dedup(search); len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	servers = dedup(servers)
	for _, s := range servers[:min(len(servers), MaxServers)] {
		b.WriteString("nameserver " + s + "\n")
	}
	return b.String()
}

func dedup(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
