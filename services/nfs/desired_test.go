package nfs

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// TestDesired reads a machine database and config into the plan's input:
// role defaults, reservations and active leases as addresses, stored
// versions, and only the configured homes whose file system is mounted.
func TestDesired(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	st, err := store.Open(ctx, store.Path(state), store.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, h := range []store.Host{
		{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}, Role: "contestant", IPv4: netip.MustParseAddr("10.0.0.11")},
		{Name: "pc-02", MACs: []string{"52:54:00:00:00:02"}, Role: "contestant", RootImage: "contest@1"},
		{Name: "admin", MACs: []string{"52:54:00:00:00:03"}, RootImage: "staff", Home: "staff"},
		{Name: "vetted", MACs: []string{"52:54:00:00:00:04"}, IPv4: netip.MustParseAddr("10.0.0.40")},
	} {
		if _, err := st.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []store.Lease{
		{IP: netip.MustParseAddr("10.0.0.12"), Subnet: "hall", MAC: "52:54:00:00:00:02", State: store.LeaseBound, Expires: now.Add(time.Hour)},
		{IP: netip.MustParseAddr("10.0.0.13"), Subnet: "hall", MAC: "52:54:00:00:00:03", State: store.LeaseBound, Expires: now.Add(-time.Minute)},
		{IP: netip.MustParseAddr("10.0.0.11"), Subnet: "hall", MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: now.Add(time.Hour)},
	} {
		if err := st.PutLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, ri := range []store.RootImage{{Name: "contest", Version: 1}, {Name: "contest", Version: 2, Promoted: true}} {
		if _, err := st.AddRootImage(ctx, ri); err != nil {
			t.Fatal(err)
		}
	}
	lay := LayoutOf(state)
	if err := lay.Prepare(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Provisioning{
		Subnets: []config.Subnet{{Name: "hall", CIDR: "10.0.0.0/24", Mode: config.ModeAuthoritative}, {Name: "old", CIDR: "10.9.0.0/24", Mode: config.ModeOff}},
		NFS: config.NFSService{Roles: map[string]config.NFSRole{"contestant": {RootImage: "contest", Home: "contestants"}},
			Homes: []config.NFSHome{{Name: "contestants", Size: "1G"}, {Name: "staff", Size: "1G"}}},
	}
	// Only mounted homes are served: staff's file system is not up.
	mounted := func(dir string) bool { return dir == lay.HomeDir("contestants") }
	got, err := desired(ctx, st, cfg, state, now, mounted)
	if err != nil {
		t.Fatal(err)
	}
	want := Input{
		DataDir:    state,
		ExportRoot: filepath.Join(state, "nfs", "exports"),
		Subnets:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		Hosts: []Host{
			{Name: "admin", Root: "staff", Home: "staff"}, // its lease expired
			{Name: "pc-01", Addrs: addrs("10.0.0.11"), Root: "contest", Home: "contestants"},
			{Name: "pc-02", Addrs: addrs("10.0.0.12"), Root: "contest@1", Home: "contestants"},
		},
		Roots: []RootImage{{Name: "contest", Version: 1}, {Name: "contest", Version: 2, Promoted: true}},
		Homes: []string{"contestants"},
	}
	sortHosts := cmpopts.SortSlices(func(a, b Host) bool { return a.Name < b.Name })
	if diff := cmp.Diff(want, got, sortHosts, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("Desired() differs (-want +got):\n%s", diff)
	}
}

func TestPlanHome(t *testing.T) {
	for _, tc := range []struct {
		name       string
		want, have int64
		mounted    bool
		step       homeStep
	}{
		{"new", 1 << 30, 0, false, homeStep{create: true, mount: true}},
		{"after a reboot", 1 << 30, 1 << 30, false, homeStep{mount: true}},
		{"in place", 1 << 30, 1 << 30, true, homeStep{}},
		{"grown in the config", 2 << 30, 1 << 30, true, homeStep{grow: true}},
		{"grown while unmounted", 2 << 30, 1 << 30, false, homeStep{mount: true, grow: true}},
		{"shrunk in the config", 1 << 30, 2 << 30, true, homeStep{shrink: true}},
	} {
		if got := planHome(tc.want, tc.have, tc.mounted); got != tc.step {
			t.Errorf("planHome(%s: want %d, have %d, mounted %v) = %+v, want %+v", tc.name, tc.want, tc.have, tc.mounted, got, tc.step)
		}
	}
}
