package nettest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

// The VM's NICs: management on user networking (QEMU's DHCP gives it
// 10.0.2.15, which the HTTPS forward reaches), provisioning on the dgram
// segment this test speaks on as 10.9.0.2.
const (
	provMAC  = "52:54:00:6b:6c:02"
	testMAC  = "52:54:00:6b:6c:99"
	vmConfig = `
hostname: kiln-net
network:
  interfaces:
    - {name: mgmt0, mac: "` + qemu.DefaultMgmtMAC + `", role: management, dhcp: true}
    - {name: prov0, mac: "` + provMAC + `", role: provisioning, addresses: [10.9.0.1/24]}
`
)

var (
	kilnProv = netip.MustParseAddr("10.9.0.1")
	testIP   = netip.MustParseAddr("10.9.0.2")
)

// TestImageNetwork boots the image with two NICs and a config given through
// fw_cfg, and checks from outside: the management NIC (renamed mgmt0 by MAC,
// DHCP) serves HTTPS; the provisioning NIC (prov0 by MAC) has 10.9.0.1,
// answers ping, and drops TCP to the management port and to closed ports
// (no RST: the firewall's default drop); netconf is ready in the status API;
// logged in as admin, GET /api/v1/network shows both NICs' addresses, the
// DHCP lease and the ruleset firewall.Render makes from the same config.
func TestImageNetwork(t *testing.T) {
	image := boottest.Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), boottest.BootTimeout()+time.Minute)
	defer cancel()

	cfgFile := filepath.Join(t.TempDir(), "kiln.yaml")
	if err := os.WriteFile(cfgFile, []byte(vmConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	vmPort, err := qemu.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	testPort, err := qemu.FreeUDPPort()
	for err == nil && testPort == vmPort {
		testPort, err = qemu.FreeUDPPort()
	}
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC(testMAC)
	seg, err := newSegment(testPort, vmPort, mac, testIP)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()

	work := t.TempDir()
	vm, err := qemu.Start(ctx, qemu.Config{
		WorkDir: work,
		Disks:   []qemu.Disk{{Path: boottest.NewOverlay(t, image, "")}},
		Mgmt:    &qemu.Mgmt{},
		NICs:    []qemu.NIC{{Kind: qemu.Dgram, LocalPort: vmPort, RemotePort: testPort, MAC: provMAC}},
		Extra:   []string{"-fw_cfg", "name=opt/kiln/config,file=" + cfgFile},
	}, qemu.Options{Logger: boottest.TestLogger(t), AnswerCursorQueries: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	vm.FailOn(boottest.PanicRE)
	defer func() {
		if t.Failed() {
			t.Logf("serial console tail:\n%s", vm.ConsoleTail())
		}
	}()
	if _, err := vm.ExpectLine(ctx, boottest.ReadyRE, boottest.BootTimeout()); err != nil {
		t.Fatalf("no \"kiln: ready\": %v", err)
	}

	// Management: HTTPS through the forward to 10.0.2.15 on mgmt0.
	hc := boottest.HTTPClient()
	base := fmt.Sprintf("https://127.0.0.1:%d", vm.HTTPSPort())
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over the management NIC: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %s, want 200", resp.Status)
	}
	resp, err = hc.Get(base + "/api/v1/status")
	if err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st struct {
		Services []struct {
			Name, State string
		}
	}
	json.Unmarshal(body, &st)
	netconf := ""
	for _, s := range st.Services {
		if s.Name == "netconf" {
			netconf = s.State
		}
	}
	if netconf != "ready" {
		t.Errorf("netconf in /api/v1/status = %q, want ready:\n%s", netconf, body)
	}
	// The same, read through the operator API as an operator would: links,
	// leases and the ruleset in the kernel.
	checkNetworkAPI(t, ctx, vm, base)

	// Provisioning: prov0 answers ARP for 10.9.0.1 with its own MAC.
	var vmMAC net.HardwareAddr
	for i := 0; i < 5 && vmMAC == nil; i++ {
		seg.send(typeARP, arp(1, seg.mac, testIP, nil, kilnProv), broadcast)
		f, ok := seg.await(ctx, 2*time.Second, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == typeARP && binary.BigEndian.Uint16(f[20:]) == 2 &&
				netip.AddrFrom4([4]byte(f[28:32])) == kilnProv
		})
		if ok {
			vmMAC = net.HardwareAddr(append([]byte(nil), f[22:28]...))
		}
	}
	if vmMAC == nil {
		t.Fatalf("no ARP reply for %s on the provisioning segment: prov0 lacks its address", kilnProv)
	}
	if vmMAC.String() != provMAC {
		t.Errorf("ARP reply for %s from %s, want the provisioning NIC %s", kilnProv, vmMAC, provMAC)
	}

	// Ping is accepted.
	pong := false
	for seq := uint16(1); seq <= 3 && !pong; seq++ {
		seg.send(typeIPv4, ipv4(testIP, kilnProv, 1, icmpEcho(0x4b49, seq)), vmMAC)
		_, pong = seg.await(ctx, 2*time.Second, func(f []byte) bool {
			p, ok := ipFrom(f, kilnProv, 1)
			return ok && len(p) >= 8 && p[0] == 0 && binary.BigEndian.Uint16(p[4:]) == 0x4b49
		})
	}
	if !pong {
		t.Fatalf("no ICMP echo reply from %s", kilnProv)
	}

	// TCP to the management port (mgmt listens on every address) and to a
	// closed port: without the firewall the first would answer SYN-ACK and the
	// second RST; the provisioning role drops both silently.
	for i, port := range []uint16{443, 80, 22} {
		sport := uint16(40000 + i)
		answered := false
		for try := 0; try < 2 && !answered; try++ {
			seg.send(typeIPv4, ipv4(testIP, kilnProv, 6, tcpSYN(testIP, kilnProv, sport, port)), vmMAC)
			_, answered = seg.await(ctx, 1500*time.Millisecond, func(f []byte) bool {
				p, ok := ipFrom(f, kilnProv, 6)
				return ok && len(p) >= 20 && binary.BigEndian.Uint16(p[0:]) == port && binary.BigEndian.Uint16(p[2:]) == sport
			})
		}
		if answered {
			t.Errorf("TCP %s:%d from the provisioning LAN was answered, want it dropped by the firewall", kilnProv, port)
		}
	}
	if strings.Contains(vm.ConsoleTail(), "PROBLEM") {
		t.Logf("the console reports problems:\n%s", vm.ConsoleTail())
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	vm.Shutdown(sctx)
}
