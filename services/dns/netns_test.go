package dns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDigNetns (tier 3) asks from a client in its own network namespace over
// a veth, as a machine on the provisioning LAN would: A, PTR and CNAME from
// the site zone, a forwarded answer for the client inside the configured
// subnet, and REFUSED forwarding (but authoritative answers) for a source
// address outside it.
func TestDigNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 bind9-dnsutils)", tool)
		}
	}
	id := os.Getpid() % 10000
	ns := fmt.Sprintf("kiln-dns-%d", id)
	hostIf, nsIf := fmt.Sprintf("kdn%dh", id), fmt.Sprintf("kdn%dn", id)
	octet := 1 + os.Getpid()%250
	hostIP := fmt.Sprintf("10.253.%d.1", octet)
	inside, outside := fmt.Sprintf("10.253.%d.2", octet), fmt.Sprintf("10.253.%d.3", octet)

	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Skipf("setting up the namespace: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", hostIP+"/24", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "-n", ns, "addr", "add", inside+"/24", "dev", nsIf)
	run("ip", "-n", ns, "addr", "add", outside+"/24", "dev", nsIf)
	run("ip", "-n", ns, "link", "set", nsIf, "up")
	run("ip", "-n", ns, "link", "set", "lo", "up")

	src := &fakeSource{version: 1, records: testRecords}
	port := startServerAt(t, src, startUpstream(t), hostIP+":0", netip.MustParsePrefix(inside+"/32"))
	wrap := []string{"ip", "netns", "exec", ns}

	for _, tc := range []struct {
		name       string
		args       []string
		wantStatus string
		wantRR     [][3]string
	}{
		{"A", []string{"-b", inside, "node1.lab.example", "A"}, "NOERROR", [][3]string{{"node1.lab.example.", "A", "10.1.0.10"}}},
		{"PTR", []string{"-b", inside, "-x", "10.1.0.10"}, "NOERROR", [][3]string{{"10.0.1.10.in-addr.arpa.", "PTR", "node1.lab.example."}}},
		{"CNAME", []string{"-b", inside, "web.lab.example", "A"}, "NOERROR", [][3]string{{"web.lab.example.", "CNAME", "node1.lab.example."}}},
		{"forwarded", []string{"-b", inside, "www.upstream.test", "A"}, "NOERROR", [][3]string{{"www.upstream.test.", "A", "198.51.100.7"}}},
		{"forwarding refused outside the subnet", []string{"-b", outside, "www.upstream.test", "A"}, "REFUSED", nil},
		{"authoritative outside the subnet", []string{"-b", outside, "node1.lab.example", "A"}, "NOERROR", [][3]string{{"node1.lab.example.", "A", "10.1.0.10"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseDig(digVia(t, wrap, hostIP, port, tc.args...))
			if got.status != tc.wantStatus {
				t.Errorf("dig %v status = %q, want %q\n%s", tc.args, got.status, tc.wantStatus, got.out)
			}
			for _, rr := range tc.wantRR {
				if !hasRR(got.out, rr[0], rr[1], rr[2]) {
					t.Errorf("dig %v answer lacks %v\n%s", tc.args, rr, got.out)
				}
			}
		})
	}
}
