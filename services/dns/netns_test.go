package dns

import (
	"fmt"
	"kiln.dev/kiln/services/internal/netnstest"
	"net/netip"
	"os"
	"testing"
)

// TestDigNetns (tier 3) asks from a client in its own network namespace over
// a veth, as a machine on the provisioning LAN would: A, PTR and CNAME from
// the site zone, a forwarded answer for the client inside the configured
// subnet, and REFUSED forwarding (but authoritative answers) for a source
// address outside it.
func TestDigNetns(t *testing.T) {
	netnstest.Require(t, "dig")
	octet := 1 + os.Getpid()%250
	hostIP := fmt.Sprintf("10.253.%d.1", octet)
	inside, outside := fmt.Sprintf("10.253.%d.2", octet), fmt.Sprintf("10.253.%d.3", octet)
	ns := netnstest.NewHostLink(t, "kiln-dns-", 0, hostIP+"/24", inside+"/24", outside+"/24").Name

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
