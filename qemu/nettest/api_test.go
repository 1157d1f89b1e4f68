package nettest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/firewall"
	"kiln.dev/kiln/services/netconf"
)

// networkStatus reads GET /api/v1/network until ready says the answer is
// complete (a DHCP lease may land after "kiln: ready"), at most 10 s.
func networkStatus(t *testing.T, ctx context.Context, base, cookie string, ready func(netconf.Status) bool) (netconf.Status, string) {
	t.Helper()
	hc := boottest.HTTPClient()
	var (
		st   netconf.Status
		body []byte
	)
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/network", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET /api/v1/network: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/network = %s, want 200:\n%s", resp.Status, body)
		}
		st = netconf.Status{}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("GET /api/v1/network: %v:\n%s", err, body)
		}
		if ready(st) || time.Now().After(deadline) {
			return st, string(body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkNetworkAPI reads the network status through the operator API with a
// real login and checks it against the VM's config: prov0 has its static
// address, mgmt0 its DHCP lease, and the kernel holds exactly the ruleset
// firewall.Render makes from the same config.
func checkNetworkAPI(t *testing.T, ctx context.Context, vm *qemu.VM, base string) {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(vmConfig))
	if err != nil {
		t.Fatal(err)
	}
	want, err := firewall.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const mgmtAddr = "10.0.2.15/24" // QEMU user networking's first DHCP address
	link := func(st netconf.Status, name string) netconf.LinkStatus {
		i := slices.IndexFunc(st.Links, func(l netconf.LinkStatus) bool { return l.Name == name })
		if i < 0 {
			return netconf.LinkStatus{}
		}
		return st.Links[i]
	}
	cookie := boottest.Login(t, ctx, vm, base)
	st, body := networkStatus(t, ctx, base, cookie, func(st netconf.Status) bool {
		return slices.Contains(link(st, "mgmt0").Addresses, mgmtAddr) && len(st.Leases) > 0
	})

	if !st.Managed || st.LastError != "" {
		t.Errorf("network status: managed %v, last error %q; want managed without error", st.Managed, st.LastError)
	}
	prov := link(st, "prov0")
	if prov.Role != config.RoleProvisioning || prov.MAC != provMAC || !prov.AdminUp ||
		!slices.Contains(prov.Addresses, kilnProv.String()+"/24") {
		t.Errorf("prov0 in /api/v1/network = %+v, want role provisioning, MAC %s, up, with %s/24", prov, provMAC, kilnProv)
	}
	mgmt := link(st, "mgmt0")
	if mgmt.Role != config.RoleManagement || mgmt.MAC != qemu.DefaultMgmtMAC || !mgmt.AdminUp ||
		!slices.Contains(mgmt.Addresses, mgmtAddr) {
		t.Errorf("mgmt0 in /api/v1/network = %+v, want role management, MAC %s, up, with %s", mgmt, qemu.DefaultMgmtMAC, mgmtAddr)
	}
	if len(st.Leases) != 1 || st.Leases[0].Interface != "mgmt0" || st.Leases[0].Addr.String() != mgmtAddr {
		t.Errorf("leases in /api/v1/network = %+v, want one on mgmt0 for %s", st.Leases, mgmtAddr)
	}
	if st.Firewall.Ruleset != want.Hash() || st.Firewall.Error != "" {
		t.Errorf("firewall in /api/v1/network: ruleset %q (error %q), want %q (firewall.Render of the VM's config)",
			st.Firewall.Ruleset, st.Firewall.Error, want.Hash())
	}
	if st.Firewall.Text != want.Text() {
		t.Errorf("firewall text in /api/v1/network:\n%s\nwant firewall.Render of the VM's config:\n%s", st.Firewall.Text, want.Text())
	}
	if t.Failed() {
		t.Logf("GET /api/v1/network:\n%s", body)
	} else {
		t.Logf("GET /api/v1/network: prov0 %v, mgmt0 %v (lease from %v), ruleset %s", prov.Addresses, mgmt.Addresses, st.Leases[0].Server, st.Firewall.Ruleset)
	}
}
