package store

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var addrEq = cmpopts.EquateComparable(netip.Addr{})

func open(t *testing.T, path string) *Store {
	t.Helper()
	if path == "" {
		path = Path(t.TempDir())
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Store, h Host) Host {
	t.Helper()
	got, err := s.CreateHost(context.Background(), h)
	if err != nil {
		t.Fatalf("CreateHost(%s) = %v", h.Name, err)
	}
	return got
}

func TestOpenMigrates(t *testing.T) {
	ctx := context.Background()
	path := Path(t.TempDir())
	s := open(t, path)
	var mode string
	var fk int
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v, want wal", mode, err)
	}
	if err := s.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v, want 1", fk, err)
	}
	s.Close()
	// Reopening applies nothing twice.
	s = open(t, path)
	var n, max int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || max != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows up to %d, want %d", n, max, SchemaVersion())
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := Path(t.TempDir())
	s := open(t, path)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_ms) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, path)
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "schema 999") {
		t.Fatalf("Open(newer db) = %v, want ErrSchemaNewer naming schema 999", err)
	}
}

func TestCreateHostInvalid(t *testing.T) {
	s := open(t, "")
	tests := []struct {
		name string
		host Host
		want string
	}{
		{"no name", Host{}, "name: missing"},
		{"bad name", Host{Name: "pc_07"}, "name: \"pc_07\" is not a valid host name"},
		{"bad mac", Host{Name: "a", MACs: []string{"52:54:00:00:00:01", "zz"}}, "macs[1]: \"zz\" is not an Ethernet MAC"},
		{"mac twice", Host{Name: "a", MACs: []string{"52:54:00:00:00:01", "52-54-00-00-00-01"}}, "macs[1]: 52:54:00:00:00:01 is listed twice (also macs[0])"},
		{"profile", Host{Name: "a", BootProfile: "pxe"}, "boot_profile: unknown profile \"pxe\""},
		{"v6", Host{Name: "a", IPv4: netip.MustParseAddr("fe80::1")}, "ipv4: fe80::1 is not an IPv4 address"},
		{"alias", Host{Name: "a", Aliases: []string{"ok", "b@d"}}, "aliases[1]:"},
		{"spec", Host{Name: "a", ExpectedSpec: "cpu: [1"}, "expected_spec: not valid YAML"},
		{"ipxe", Host{Name: "a", IPXEBinary: "../x.efi"}, "ipxe_binary:"},
		{"kernel profile without kernel", Host{Name: "a", BootProfile: BootKernel}, "kernel: missing (boot profile kernel"},
		{"kernel escapes", Host{Name: "a", Kernel: "../vmlinuz"}, "kernel: \"../vmlinuz\" is neither a path"},
		{"initrd absolute", Host{Name: "a", Initrd: "/boot/initrd"}, "initrd: \"/boot/initrd\" is neither"},
		{"kernel URL with space", Host{Name: "a", Kernel: "http://x/a b"}, "kernel:"},
		{"cmdline two lines", Host{Name: "a", Cmdline: "quiet\nboot || shell"}, "cmdline: must be one line"},
		{"root image path", Host{Name: "a", RootImage: "../data"}, "root_image: \"../data\" is not a root image"},
		{"root image version", Host{Name: "a", RootImage: "contest@0"}, "root_image: \"contest@0\""},
		{"root image upper case", Host{Name: "a", RootImage: "Contest"}, "root_image:"},
		{"home path", Host{Name: "a", Home: "lab/../x"}, "home: \"lab/../x\" is not a home name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateHost(context.Background(), tt.host)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CreateHost(%+v) = %v, want ErrInvalid containing %q", tt.host, err, tt.want)
			}
		})
	}
	if hs, _ := s.ListHosts(context.Background()); len(hs) != 0 {
		t.Errorf("ListHosts() after failed creates = %d hosts, want 0", len(hs))
	}
}

func TestCreateHostConflicts(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	mustCreate(t, s, Host{Name: "pc-07", MACs: []string{"52:54:00:00:00:01"}, IPv4: netip.MustParseAddr("10.0.0.7"), Aliases: []string{"db"}})
	tests := []struct {
		name string
		host Host
		want string
	}{
		{"name", Host{Name: "PC-07"}, "name: pc-07 already exists"},
		{"mac", Host{Name: "pc-08", MACs: []string{"52:54:00:00:00:02", "52:54:00:00:00:01"}}, "macs[1]: 52:54:00:00:00:01 already belongs to host pc-07"},
		{"ipv4", Host{Name: "pc-08", IPv4: netip.MustParseAddr("10.0.0.7")}, "ipv4: 10.0.0.7 is already reserved for host pc-07"},
		{"alias is name", Host{Name: "pc-08", Aliases: []string{"pc-07"}}, "aliases[0]: pc-07 is the name of another host"},
		{"alias taken", Host{Name: "pc-08", Aliases: []string{"db"}}, "aliases[0]: db is already an alias of host pc-07"},
		{"name is alias", Host{Name: "db"}, "name: db is already an alias of host pc-07"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateHost(ctx, tt.host)
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CreateHost(%+v) = %v, want ErrConflict containing %q", tt.host, err, tt.want)
			}
		})
	}
	if hs, _ := s.ListHosts(ctx); len(hs) != 1 {
		t.Errorf("ListHosts() = %d hosts, want 1 (nothing partially stored)", len(hs))
	}
	if _, err := s.HostByMAC(ctx, "52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByMAC(mac of refused host) = %v, want ErrNotFound", err)
	}
}

func TestHostLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := Open(ctx, Path(t.TempDir()), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v0, _ := s.DataVersion(ctx)
	h := mustCreate(t, s, Host{Name: "pc-07", MACs: []string{"52-54-00-AA-BB-01"}, Role: "worker", CircuitID: "sw1/7"})
	if h.ID == 0 || len(h.Token) != 32 || h.BootProfile != BootLocal || !h.Created.Equal(now) {
		t.Errorf("CreateHost() = %+v, want ID, 32-char token, profile local, created %v", h, now)
	}
	if v1, _ := s.DataVersion(ctx); v1 == v0 {
		t.Errorf("DataVersion() unchanged after CreateHost")
	}
	got, err := s.HostByMAC(ctx, "52:54:00:aa:bb:01")
	if diff := cmp.Diff(h, got, addrEq); err != nil || diff != "" {
		t.Errorf("HostByMAC() = %v, diff (-want +got):\n%s", err, diff)
	}
	if got, err := s.HostByToken(ctx, h.Token); err != nil || got.Name != "pc-07" {
		t.Errorf("HostByToken() = %v, %v, want pc-07", got.Name, err)
	}
	if got, err := s.HostByOption82(ctx, "sw1/7", "anything"); err != nil || got.Name != "pc-07" {
		t.Errorf("HostByOption82(sw1/7) = %v, %v, want pc-07", got.Name, err)
	}
	if _, err := s.HostByOption82(ctx, "sw1/8", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByOption82(sw1/8) = %v, want ErrNotFound", err)
	}
	now = now.Add(time.Hour)
	h.MACs = []string{"52:54:00:aa:bb:02"}
	h.IPv4 = netip.MustParseAddr("10.0.0.7")
	token := h.Token
	h.Token = ""
	u, err := s.UpdateHost(ctx, h)
	if err != nil {
		t.Fatalf("UpdateHost() = %v", err)
	}
	if u.Token != token || !u.Updated.Equal(now) || u.Created.Equal(now) {
		t.Errorf("UpdateHost() = token %q updated %v created %v, want token kept, updated now", u.Token, u.Updated, u.Created)
	}
	if _, err := s.HostByMAC(ctx, "52:54:00:aa:bb:01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByMAC(old mac) = %v, want ErrNotFound", err)
	}
	res, _ := s.Reservations(ctx)
	if diff := cmp.Diff(map[netip.Addr]string{netip.MustParseAddr("10.0.0.7"): "pc-07"}, res, addrEq); diff != "" {
		t.Errorf("Reservations() diff (-want +got):\n%s", diff)
	}
	if err := s.DeleteHost(ctx, "pc-07"); err != nil {
		t.Fatalf("DeleteHost() = %v", err)
	}
	if err := s.DeleteHost(ctx, "pc-07"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteHost(again) = %v, want ErrNotFound", err)
	}
	// The MAC is free again (cascade).
	mustCreate(t, s, Host{Name: "pc-09", MACs: []string{"52:54:00:aa:bb:02"}})
}

func TestEnrollUnknown(t *testing.T) {
	ctx := context.Background()
	path := Path(t.TempDir())
	a, b := open(t, path), open(t, path) // two processes' worth of connections
	// A host named like the enrolled one but without the MAC forces a suffix.
	mustCreate(t, a, Host{Name: "unknown-525400000099"})
	var wg sync.WaitGroup
	results := make([]Host, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			results[i], _, errs[i] = s.EnrollUnknown(ctx, "52:54:00:00:00:99")
		}()
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || results[i].Name != "unknown-525400000099-2" || results[i].Role != EnrolledRole {
			t.Errorf("EnrollUnknown() #%d = %q role %q, %v, want unknown-525400000099-2 role unknown", i, results[i].Name, results[i].Role, errs[i])
		}
	}
	hs, _ := a.ListHosts(ctx)
	if len(hs) != 2 {
		t.Errorf("ListHosts() = %d hosts, want 2", len(hs))
	}
	if _, created, _ := a.EnrollUnknown(ctx, "525400000099"); created {
		t.Errorf("EnrollUnknown(known) created a host")
	}
}

func TestLeases(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	l := Lease{IP: netip.MustParseAddr("10.0.0.100"), Subnet: "lan", MAC: "52:54:00:00:00:01", Hostname: "a", State: LeaseOffered, Expires: exp}
	if err := s.PutLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	v1, _ := s.DataVersion(ctx)
	l.State = LeaseBound
	if err := s.PutLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	v2, _ := s.DataVersion(ctx)
	l.Expires = exp.Add(time.Hour) // renewal
	if err := s.PutLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if v3, _ := s.DataVersion(ctx); v2 == v1 || v3 != v2 {
		t.Errorf("DataVersion() = %d, %d, %d: want a change on bind and none on renewal", v1, v2, v3)
	}
	got, err := s.LeaseByMAC(ctx, "lan", "52:54:00:00:00:01")
	if err != nil || got.IP != l.IP || got.State != LeaseBound || !got.Expires.Equal(l.Expires) {
		t.Errorf("LeaseByMAC() = %+v, %v, want %+v", got, err, l)
	}
	// The same MAC moving to another address gives up the first one.
	l.IP = netip.MustParseAddr("10.0.0.9")
	if err := s.PutLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseByIP(ctx, netip.MustParseAddr("10.0.0.100")); !errors.Is(err, ErrNotFound) {
		t.Errorf("LeaseByIP(old) = %v, want ErrNotFound", err)
	}
	// Declined addresses have no MAC; several may exist.
	for _, ip := range []string{"10.0.0.10", "10.0.0.11"} {
		if err := s.PutLease(ctx, Lease{IP: netip.MustParseAddr(ip), Subnet: "lan", State: LeaseDeclined, Expires: exp}); err != nil {
			t.Fatalf("PutLease(declined %s) = %v", ip, err)
		}
	}
	ls, _ := s.Leases(ctx, "lan")
	var ips []string
	for _, l := range ls {
		ips = append(ips, l.IP.String())
	}
	if want := []string{"10.0.0.9", "10.0.0.10", "10.0.0.11"}; !cmp.Equal(ips, want) {
		t.Errorf("Leases(lan) = %v, want %v", ips, want)
	}
	if err := s.PutLease(ctx, Lease{IP: netip.MustParseAddr("10.0.0.12"), State: "weird"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutLease(bad state) = %v, want ErrInvalid", err)
	}
}

func TestBootEvents(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, k := range []string{EventDHCPOffer, EventDHCPAck, EventTFTP} {
		if err := s.AddBootEvent(ctx, BootEvent{MAC: "52:54:00:00:00:01", Host: "a", Kind: k, Time: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.BootEvents(ctx, "52-54-00-00-00-01", 2)
	if err != nil || len(es) != 2 || es[0].Kind != EventTFTP || es[1].Kind != EventDHCPAck {
		t.Errorf("BootEvents(limit 2) = %+v, %v, want tftp, dhcp_ack", es, err)
	}
	if n, err := s.PruneBootEvents(ctx, t0.Add(time.Second)); err != nil || n != 1 {
		t.Errorf("PruneBootEvents() = %d, %v, want 1", n, err)
	}
	for i := range 5 {
		if err := s.AddBootEvent(ctx, BootEvent{MAC: "52:54:00:00:00:02", Kind: EventScript, Time: t0.Add(time.Duration(10+i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneBootEventsKeep(ctx, 3); err != nil || n != 4 {
		t.Errorf("PruneBootEventsKeep(3) of 7 = %d, %v, want 4 deleted", n, err)
	}
	if es, _ := s.BootEvents(ctx, "52:54:00:00:00:02", 10); len(es) != 3 || !es[2].Time.Equal(t0.Add(12*time.Second)) {
		t.Errorf("events left = %+v, want the newest 3", es)
	}
	if n, err := s.PruneBootEventsKeep(ctx, 3); err != nil || n != 0 {
		t.Errorf("PruneBootEventsKeep(3) again = %d, %v, want 0", n, err)
	}
}

const hallYAML = `hosts:
  - name: pc-01
    macs: [52:54:00:00:01:01, 52:54:00:00:01:02]
    role: worker
    boot_profile: vet
    ipv4: 10.0.0.11
    aliases: [build]
    circuit_id: sw1/1
    ipxe_binary: snponly.efi
    expected_spec:
      expect:
        - {fact: cpu.threads, min: 8}
  - name: pc-02
    macs: [52:54:00:00:02:01]
    switch_port: sw1 gi0/2
    wol_mac: 52:54:00:00:02:01
    boot_profile: kernel
    kernel: custom/vmlinuz
    initrd: https://images.example/initrd.img
    cmdline: console=ttyS0,115200 quiet
  - name: pc-09
    macs: [52:54:00:00:09:01]
    boot_profile: diskless
    root_image: contest@2
    home: lab
`

func TestImportAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	mustCreate(t, s, Host{Name: "pc-07", MACs: []string{"52:54:00:00:00:01"}})
	in := hallYAML + `  - name: pc-03
    macs:
      - 52:54:00:00:03:01
      - 52:54:00:00:00:01
  - name: pc-04
    boot_profile: bogus
`
	_, err := s.ImportHosts(ctx, strings.NewReader(in), FormatYAML, false)
	for _, want := range []string{
		"line 29: host pc-03: macs[1]: 52:54:00:00:00:01 already belongs to host pc-07",
		"line 31: host pc-04: boot_profile: unknown profile \"bogus\"",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ImportHosts() = %v, want error containing %q", err, want)
		}
	}
	if hs, _ := s.ListHosts(ctx); len(hs) != 1 {
		t.Errorf("ListHosts() after failed import = %d hosts, want 1 (all or nothing)", len(hs))
	}
}

func TestImportParseErrors(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		in   string
		want []string
	}{
		{"yaml unknown field", FormatYAML, "hosts:\n  - name: a\n    mac: 52:54:00:00:00:01\n", []string{"line 3: mac: unknown field"}},
		{"yaml bad ipv4", FormatYAML, "hosts:\n  - name: a\n  - name: b\n    ipv4: 10.0.0.300\n", []string{"line 4: ipv4: \"10.0.0.300\" is not an IPv4 address"}},
		{"yaml dup name", FormatYAML, "hosts:\n  - name: a\n  - name: A\n", []string{"line 3: host A: name: a is also on line 2"}},
		{"yaml dup mac", FormatYAML, "hosts:\n  - name: a\n    macs: [52:54:00:00:00:01]\n  - name: b\n    macs: [52:54:00:00:00:09, 525400000001]\n",
			[]string{"line 5: host b: macs[1]: 52:54:00:00:00:01 is also listed for host a on line 2"}},
		{"csv unknown column", FormatCSV, "name,mac\na,52:54:00:00:00:01\n", []string{"line 1: column 2: unknown column \"mac\""}},
		{"csv no name", FormatCSV, "macs\n52:54:00:00:00:01\n", []string{"header: no name column"}},
		{"csv bad ip", FormatCSV, "name,ipv4\na,10.0.0.1\nb,nope\n", []string{"line 3: ipv4: \"nope\" is not an IPv4 address"}},
		{"csv bad mac", FormatCSV, "name,macs\na,52:54:00:00:00:01 52:54:00:00:00:zz\n", []string{"line 2: host a: macs[1]:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, "")
			_, err := s.ImportHosts(context.Background(), strings.NewReader(tt.in), tt.f, false)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("ImportHosts(%q) = %v, want error containing %q", tt.in, err, w)
				}
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) {
				t.Errorf("ImportHosts(%q) = %v, want ErrInvalid or ErrConflict", tt.in, err)
			}
		})
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, f := range []Format{FormatYAML, FormatCSV} {
		t.Run(string(f), func(t *testing.T) {
			a := open(t, "")
			if res, err := a.ImportHosts(ctx, strings.NewReader(hallYAML), FormatYAML, false); err != nil || res.Created != 3 {
				t.Fatalf("ImportHosts(hall) = %+v, %v, want 3 created", res, err)
			}
			var out1 bytes.Buffer
			if err := a.ExportHosts(ctx, &out1, f); err != nil {
				t.Fatal(err)
			}
			b := open(t, "")
			if _, err := b.ImportHosts(ctx, bytes.NewReader(out1.Bytes()), f, false); err != nil {
				t.Fatalf("ImportHosts(export) = %v\n%s", err, out1.String())
			}
			var out2 bytes.Buffer
			if err := b.ExportHosts(ctx, &out2, f); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(out1.String(), out2.String()); diff != "" {
				t.Errorf("export after round trip differs (-first +second):\n%s", diff)
			}
			ha, _ := a.ListHosts(ctx)
			hb, _ := b.ListHosts(ctx)
			ignore := cmpopts.IgnoreFields(Host{}, "ID", "Token", "Created", "Updated")
			if diff := cmp.Diff(ha, hb, ignore, addrEq); diff != "" {
				t.Errorf("hosts after round trip differ (-a +b):\n%s", diff)
			}
			if ha[2].RootImage != "contest@2" || ha[2].Home != "lab" {
				t.Errorf("root_image, home after round trip = %q, %q; want contest@2, lab", ha[2].RootImage, ha[2].Home)
			}
			if ha[0].ExpectedSpec != "expect:\n    - {fact: cpu.threads, min: 8}\n" {
				t.Errorf("structured expected_spec stored as %q", ha[0].ExpectedSpec)
			}
		})
	}
}

func TestImportReplaceMovesMACs(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	if _, err := s.ImportHosts(ctx, strings.NewReader(hallYAML), FormatYAML, false); err != nil {
		t.Fatal(err)
	}
	before, _ := s.HostByName(ctx, "pc-01")
	swap := "name,macs,ipv4\npc-01,52:54:00:00:02:01,10.0.0.12\npc-02,52:54:00:00:01:01,10.0.0.11\npc-05,52:54:00:00:05:01,\n"
	if _, err := s.ImportHosts(ctx, strings.NewReader(swap), FormatCSV, false); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("ImportHosts(existing, no replace) = %v, want ErrConflict suggesting --replace", err)
	}
	res, err := s.ImportHosts(ctx, strings.NewReader(swap), FormatCSV, true)
	if err != nil || res != (ImportResult{Created: 1, Updated: 2}) {
		t.Fatalf("ImportHosts(replace) = %+v, %v, want 1 created 2 updated", res, err)
	}
	h, _ := s.HostByMAC(ctx, "52:54:00:00:01:01")
	if h.Name != "pc-02" || h.IPv4.String() != "10.0.0.11" {
		t.Errorf("HostByMAC(52:54:00:00:01:01) = %s %s, want pc-02 10.0.0.11", h.Name, h.IPv4)
	}
	after, _ := s.HostByName(ctx, "pc-01")
	if after.Token != before.Token || after.ID != before.ID {
		t.Errorf("replace changed pc-01's token or id")
	}
}

// FuzzParseHosts feeds operator files (outside input) to both parsers.
func FuzzParseHosts(f *testing.F) {
	f.Add([]byte(hallYAML), false)
	f.Add([]byte("name,macs,ipv4\npc-01,52:54:00:00:01:01,10.0.0.11\n"), true)
	f.Add([]byte("hosts:\n  - name: a\n    expected_spec: {cpus: [1, 2]}\n"), false)
	f.Fuzz(func(t *testing.T, in []byte, csv bool) {
		format := FormatYAML
		if csv {
			format = FormatCSV
		}
		hs, err := ParseHosts(bytes.NewReader(in), format)
		if err != nil {
			return
		}
		for _, h := range hs {
			h.normalize() // must not panic on anything the parser accepted
		}
	})
}

func TestReservedFor(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	mustCreate(t, s, Host{Name: "pc-07", IPv4: netip.MustParseAddr("10.0.0.7")})
	for _, tc := range []struct{ ip, want string }{{"10.0.0.7", "pc-07"}, {"10.0.0.8", ""}} {
		if got, err := s.ReservedFor(ctx, netip.MustParseAddr(tc.ip)); got != tc.want || err != nil {
			t.Errorf("ReservedFor(%s) = %q, %v, want %q", tc.ip, got, err, tc.want)
		}
	}
}
