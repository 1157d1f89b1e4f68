package httpboot

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/internal/netnstest"
	"kiln.dev/kiln/services/store"
)

// TestNetnsScriptGoesToItsMachine (tier 3): the HTTP boot server in the
// host namespace, a client namespace with two addresses on one veth and
// curl. A script is served to the address the client's MAC leases, refused
// (with the same token) from the client's other address, and served there
// once the kernel's real ARP table (/proc/net/arp) is consulted: that
// address is on-link with the MAC in the URL. A nonce minted as the DHCP
// service mints it (the key derived from the state directory's sealing
// key) for the leased address is refused from the other address, served
// once from the leased one, then refused.
func TestNetnsScriptGoesToItsMachine(t *testing.T) {
	netnstest.Require(t, "curl")
	octet := 1 + os.Getpid()%250
	server := fmt.Sprintf("10.252.%d.1", octet)
	leased, other := fmt.Sprintf("10.252.%d.2", octet), fmt.Sprintf("10.252.%d.3", octet)
	link := netnstest.NewHostLink(t, "sboot-", 0, server+"/24", leased+"/24", other+"/24")
	m := regexp.MustCompile(`link/ether ([0-9a-f:]{17})`).FindStringSubmatch(link.IP("link", "show", link.NSIf))
	if m == nil {
		t.Fatalf("no MAC on %s", link.NSIf)
	}
	mac := m[1]

	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := st.CreateHost(ctx, store.Host{Name: "nsnode", MACs: []string{mac}, BootProfile: store.BootLocal})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr(leased), Subnet: "lab", MAC: mac, State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	root, _ := filesRoot(t)
	var useARP atomic.Bool
	arp := ProcNeighbor("/proc/net/arp")
	keyPath := filepath.Join(t.TempDir(), store.KeyFileName)
	dhcpKey, err := bootnonce.LoadKey(keyPath) // the DHCP service's
	if err != nil {
		t.Fatal(err)
	}
	bootKey, err := bootnonce.LoadKey(keyPath) // the HTTP boot service's
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	s, err := New(Options{FilesRoot: root, Nonces: bootnonce.NewRedeemer(bootKey, 0, started), Neighbor: func(ip netip.Addr) string {
		if !useARP.Load() {
			return ""
		}
		return arp(ip)
	}}, storeHosts{st: st, now: time.Now}, storeEvents{st}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", server+":0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, ln, nil) }()
	defer func() { cancel(); <-done }()

	script := "http://" + ln.Addr().String() + "/boot/" + mac + ".ipxe"
	url := script + "?token=" + h.Token
	fetch := func(from string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		out, err := link.Exec(cctx, "curl", "-sS", "--max-time", "10", "--interface", from, url)
		if err != nil {
			t.Fatalf("curl from %s: %v\n%s", from, err, out)
		}
		return out
	}
	if b := fetch(leased); !strings.Contains(b, "# kiln boot script for nsnode") {
		t.Errorf("script asked from the MAC's lease %s =\n%s\nwant nsnode's script", leased, b)
	}
	if b := fetch(other); !strings.Contains(b, "no network boot for "+mac+" from "+other) {
		t.Errorf("script asked from %s (not the lease) =\n%s\nwant a refusal naming the address", other, b)
	}
	useARP.Store(true)
	if b := fetch(other); !strings.Contains(b, "# kiln boot script for nsnode") {
		t.Errorf("script asked from %s with the ARP table consulted =\n%s\nwant nsnode's script (the address is on-link with %s)", other, b, mac)
	}

	hw, _ := net.ParseMAC(mac)
	url = script + "?nonce=" + dhcpKey.Mint(bootnonce.Exchange{XID: [4]byte{1, 2, 3, 4}, MAC: hw, Addr: netip.MustParseAddr(leased)}, time.Now())
	for _, step := range []struct{ from, want string }{
		{other, "no network boot for " + mac + " from " + other + ": this boot URL was handed out for another address"},
		{leased, "# kiln boot script for nsnode"},
		{leased, "this boot URL is used up or expired"},
	} {
		if b := fetch(step.from); !strings.Contains(b, step.want) {
			t.Errorf("script with a nonce for %s asked from %s =\n%s\nwant %q", leased, step.from, b, step.want)
		}
	}
}
