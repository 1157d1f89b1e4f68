package httpboot

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

func TestKindsMatchStore(t *testing.T) {
	if KindScript != store.EventScript || KindFile != store.EventKernel {
		t.Errorf("event kinds %q/%q, want the store's %q/%q", KindScript, KindFile, store.EventScript, store.EventKernel)
	}
	for _, p := range store.BootProfiles {
		if _, err := RenderScript(Host{Name: "n", Profile: string(p), Token: "t", RunToken: "t", Kernel: "k", RootImage: "r/1"}, testMAC, testBase, DefaultProfiles()); err != nil {
			t.Errorf("RenderScript(profile %q from the store) = %v, want a script", p, err)
		}
	}
}

// TestStoreAdapters serves scripts and records events through a real
// machine database.
func TestStoreAdapters(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{macA}, BootProfile: store.BootVet})
	if err != nil {
		t.Fatal(err)
	}
	if h.Token == "" {
		t.Fatal("store created a host without a token")
	}
	if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.0.0.50"), Subnet: "a", MAC: macA, State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	root, _ := filesRoot(t)
	orch := orchestrator.New(st, config.Vetting{}, t.TempDir(), testLogger(t))
	s, err := New(Options{FilesRoot: root, Runs: vetRuns{st, orch}}, storeHosts{st: st, now: time.Now}, storeEvents{st}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Its token from an address that is not its lease: refused, no run made.
	if b := body(getFrom(s, "10.0.0.99:40000", http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token)); !strings.Contains(b, "from 10.0.0.99") {
		t.Errorf("script for node1 asked from 10.0.0.99 =\n%s\nwant a refusal naming the address", b)
	}
	if runs, _ := st.ListVetRuns(ctx, store.VetRunFilter{Host: "node1"}); len(runs) != 0 {
		t.Errorf("a refused script request made runs %+v", runs)
	}

	// node1 was never vetted: its first network boot creates a run (auto_run).
	resp := get(s, http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token)
	runs, err := st.ListVetRuns(ctx, store.VetRunFilter{Host: "node1"})
	if err != nil || len(runs) != 1 || runs[0].State != orchestrator.StateBooting || runs[0].Token == "" {
		t.Fatalf("runs of node1 after its script = %+v, %v; want one booting run with a token", runs, err)
	}
	if b := body(resp); !strings.Contains(b, "kiln.token="+runs[0].Token+" ") || strings.Contains(b, h.Token) || !strings.Contains(b, "profile vet") {
		t.Errorf("script for node1 from the store =\n%s\nwant the vet profile with its run's token and not the host's", b)
	}
	if b := body(get(s, http.MethodGet, "/boot/52:54:00:00:00:ff.ipxe?token="+h.Token)); !strings.Contains(b, "unknown machine") {
		t.Errorf("script for an unknown MAC =\n%s\nwant a refusal", b)
	}
	get(s, http.MethodGet, "/files/vet/vmlinuz") // no ?mac=: attributed through the lease of 10.0.0.50

	evs, err := st.BootEvents(ctx, macA, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+"/"+e.Host+"/"+e.Detail)
	}
	want := []string{"kernel/node1/vet/vmlinuz", "script/node1/profile vet", "script_denied/node1/requested from 10.0.0.99, not the MAC's lease or reservation"}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Errorf("stored boot events = %q, want %q (newest first)", kinds, want)
	}

	// Once its run is over, node1 boots on to its disk until an operator
	// starts another run.
	if _, err := orch.Stop(ctx, runs[0].ID); err != nil {
		t.Fatal(err)
	}
	b := body(get(s, http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token))
	if !strings.Contains(b, "no vetting run queued for node1") || !strings.HasSuffix(b, "exit 1\n") {
		t.Errorf("script for node1 after its run =\n%s\nwant a fall-through naming the missing run", b)
	}
	r, err := orch.Start(ctx, orchestrator.StartRequest{Host: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	if b := body(get(s, http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token)); !strings.Contains(b, "kiln.token="+r.Token+" ") {
		t.Errorf("script for node1 with a started run =\n%s\nwant its token %s", b, r.Token)
	}
}

func TestOptionsFromConfig(t *testing.T) {
	c := config.Default()
	c.Provisioning.Subnets = []config.Subnet{
		{Name: "a", CIDR: "10.0.0.0/24", Boot: config.Boot{HTTPBase: "http://boot.lab.example:8080/"}},
		{Name: "b", CIDR: "10.1.0.0/24"},
	}
	o := OptionsFromConfig(c, "/data/state")
	if o.Listen != ":8080" || o.FilesRoot != "/data/state/boot" || o.IPXERoot != config.DefaultTFTPRoot {
		t.Errorf("OptionsFromConfig = listen %q files %q ipxe %q, want :8080, /data/state/boot and %s", o.Listen, o.FilesRoot, o.IPXERoot, config.DefaultTFTPRoot)
	}
	c2 := c
	c2.Provisioning.HTTPBoot = config.HTTPBootService{Listen: "10.0.0.1:8081", Root: "/srv/boot"}
	c2.Provisioning.TFTP.Root = "/srv/tftp"
	if o := OptionsFromConfig(c2, "/data/state"); o.Listen != "10.0.0.1:8081" || o.FilesRoot != "/srv/boot" || o.IPXERoot != "/srv/tftp" {
		t.Errorf("OptionsFromConfig(http_boot %+v, tftp.root /srv/tftp) = listen %q files %q ipxe %q", c2.Provisioning.HTTPBoot, o.Listen, o.FilesRoot, o.IPXERoot)
	}
	for _, tc := range []struct{ client, want string }{
		{"10.0.0.9", "http://boot.lab.example:8080"},
		{"10.1.0.9", ""},
	} {
		if got := o.BaseURL(netip.MustParseAddr(tc.client)); got != tc.want {
			t.Errorf("BaseURL(%s) = %q, want %q", tc.client, got, tc.want)
		}
	}
}

// TestKernelProfileFromStore boots a host's own kernel, initrd and command
// line as stored (migration 0003).
func TestKernelProfileFromStore(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := st.CreateHost(ctx, store.Host{Name: "node2", MACs: []string{macA}, BootProfile: store.BootKernel,
		IPv4: netip.MustParseAddr("10.0.0.50"), Kernel: "custom/vmlinuz", Initrd: "https://images.example/initrd.img", Cmdline: "console=ttyS0 quiet"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filesRoot(t)
	s, err := New(Options{FilesRoot: root}, storeHosts{st: st, now: time.Now}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := body(get(s, http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token))
	for _, want := range []string{
		"kernel http://10.0.0.1:8080/files/custom/vmlinuz?mac=" + macA + " initrd=initrd console=ttyS0 quiet || goto failed",
		"initrd --name initrd https://images.example/initrd.img || goto failed",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("kernel-profile script =\n%s\nwant a line %q", b, want)
		}
	}
}

// TestStoreDiskless resolves a diskless host's root image choice — its own,
// else its role's — to the version its script names.
func TestStoreDiskless(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, ri := range []store.RootImage{{Name: "contest", Version: 1}, {Name: "contest", Version: 2, Promoted: true}, {Name: "staged", Version: 1}} {
		if _, err := st.AddRootImage(ctx, ri); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Provisioning{NFS: config.NFSService{Roles: map[string]config.NFSRole{"contestant": {RootImage: "contest", Home: "lab"}}}}
	hosts := storeHosts{st: st, now: time.Now, cfg: cfg}
	for i, tc := range []struct {
		host      store.Host
		root      string
		home      string
		rootError string
	}{
		{store.Host{Name: "pc-01", Role: "contestant"}, "contest/2", "lab", ""},
		{store.Host{Name: "pc-02", Role: "contestant", RootImage: "contest@1", Home: "staff"}, "contest/1", "staff", ""},
		{store.Host{Name: "pc-03", Role: "tester", RootImage: "staged"}, "", "", "root image staged has no promoted version"},
		{store.Host{Name: "pc-04", Role: "tester"}, "", "", ""},
	} {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		tc.host.MACs, tc.host.BootProfile = []string{mac}, store.BootDiskless
		if _, err := st.CreateHost(ctx, tc.host); err != nil {
			t.Fatal(err)
		}
		h, err := hosts.HostByMAC(ctx, mac)
		if err != nil {
			t.Fatal(err)
		}
		if h.RootImage != tc.root || h.Home != tc.home || !strings.HasPrefix(h.RootError, tc.rootError) || (tc.rootError == "") != (h.RootError == "") {
			t.Errorf("HostByMAC(%s) = root %q home %q error %q, want %q %q %q", tc.host.Name, h.RootImage, h.Home, h.RootError, tc.root, tc.home, tc.rootError)
		}
	}
}
