package iscsi

import (
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpState compares States (netip values by ==).
var cmpState = cmpopts.EquateComparable(netip.AddrPort{})

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, d)
	}
}

var hall = func() Names {
	n, err := NewNames("hall.example", "2026-01")
	if err != nil {
		panic(err)
	}
	return n
}()

// site: node1 with two volumes and mutual CHAP, node2 with one, node3
// with a volume but no initiator record, and two provisioning portals.
var site = Inputs{
	Names:   hall,
	Portals: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3260"), netip.MustParseAddrPort("10.20.0.1:3260")},
	Initiators: []Initiator{
		{Host: "node2", IQN: hall.Initiator("node2"), CHAP: CHAP{UserID: "node2", Password: "s2s2s2s2s2s2s2s2"}},
		{Host: "node1", IQN: "iqn.1991-05.com.microsoft:node1", CHAP: CHAP{UserID: "node1", Password: "s1s1s1s1s1s1s1s1",
			MutualUserID: "kiln", MutualPassword: "m1m1m1m1m1m1m1m1"}},
	},
	Volumes: []Volume{
		{Host: "node2", Name: "boot", File: "/data/iscsi/volumes/node2.boot.img", Size: 8 << 30},
		{Host: "node1", Name: "scratch", File: "/data/iscsi/volumes/node1.scratch.img", Size: 100 << 30},
		{Host: "node1", Name: "boot", File: "/data/iscsi/volumes/node1.boot.img", Size: 16 << 30},
		{Host: "node3", Name: "boot", File: "/data/iscsi/volumes/node3.boot.img", Size: 16 << 30},
	},
}

func mustDesired(t *testing.T, in Inputs) State {
	t.Helper()
	st, err := Desired(in)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDesiredIsPure(t *testing.T) {
	a := mustDesired(t, site)
	shuffled := site
	shuffled.Volumes = slices.Clone(site.Volumes)
	slices.Reverse(shuffled.Volumes)
	shuffled.Initiators = slices.Clone(site.Initiators)
	slices.Reverse(shuffled.Initiators)
	shuffled.Portals = append(slices.Clone(site.Portals), site.Portals[0])
	if d := cmp.Diff(a, mustDesired(t, shuffled), cmpState); d != "" {
		t.Errorf("Desired depends on input order (-first +shuffled):\n%s", d)
	}
	var iqns []string
	for _, tg := range a.Targets {
		iqns = append(iqns, tg.IQN)
	}
	if want := []string{hall.Target("node1"), hall.Target("node2")}; !slices.Equal(iqns, want) {
		t.Errorf("targets = %v, want %v (node3 has no initiator record)", iqns, want)
	}
}

func TestDesiredRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Inputs)
		want string
	}{
		{"bad initiator IQN", func(in *Inputs) { in.Initiators[0].IQN = "iqn.2026-01.example.hall:Node2" }, "host node2: initiator"},
		{"no secret", func(in *Inputs) { in.Initiators[0].CHAP.Password = "" }, "has no CHAP secret"},
		{"host name too long for an IQN", func(in *Inputs) {
			long := strings.Repeat("n", 200)
			in.Initiators = append(in.Initiators, Initiator{Host: long, IQN: hall.Initiator("x"), CHAP: CHAP{UserID: "u", Password: "p"}})
			in.Volumes = append(in.Volumes, Volume{Host: long, Name: "boot", File: "/f", Size: 1})
		}, "target:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := site
			in.Initiators = slices.Clone(site.Initiators)
			in.Volumes = slices.Clone(site.Volumes)
			c.edit(&in)
			if _, err := Desired(in); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Desired = %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestPortals(t *testing.T) {
	subnets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.20.0.0/24")}
	local := []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("10.20.0.1"),
		netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.20.0.1")}
	got := Portals(subnets, local, 3260)
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3260"), netip.MustParseAddrPort("10.20.0.1:3260")}
	if !slices.Equal(got, want) {
		t.Errorf("Portals = %v, want %v (provisioning addresses only)", got, want)
	}
}

// drifted is site's LIO state after drift: node1's scratch volume grew in
// the database, node2's boot file moved, an old host's target and
// backstore are orphans, a portal left the config, node1's CHAP secret
// was regenerated, a mapping and an attribute were lost and node2's TPG
// is disabled.
func drifted(t *testing.T) State {
	st := mustDesired(t, site)
	st.Backstores[1].Size = 50 << 30 // node1.scratch
	st.Backstores[2].File = "/data/iscsi/volumes/old.img"
	st.Backstores = append(st.Backstores, Backstore{Name: "gone.boot", File: "/data/iscsi/volumes/gone.boot.img", Size: 1 << 30, Serial: "gone.boot"})
	n1, n2 := &st.Targets[0], &st.Targets[1]
	n1.Portals = append(slices.Clone(n1.Portals), netip.MustParseAddrPort("10.30.0.1:3260"))
	n1.ACLs = slices.Clone(n1.ACLs)
	n1.ACLs[0].CHAP.Password = "old-secret-old-secret"
	n1.ACLs[0].LUNs = []int{0}
	n1.Attrib = maps.Clone(n1.Attrib)
	n1.Attrib["generate_node_acls"] = "1"
	n2.Enabled = false
	st.Targets = append(st.Targets, Target{IQN: hall.Target("gone"), LUNs: []LUN{{0, "gone.boot"}},
		ACLs: []ACL{{Initiator: hall.Initiator("gone"), LUNs: []int{0}}}, Enabled: true})
	st.sort()
	return st
}

func TestDiffGolden(t *testing.T) {
	want := mustDesired(t, site)
	for _, c := range []struct {
		name string
		have State
		want State
	}{
		{"fresh.plan", State{}, want},
		{"drifted.plan", drifted(t), want},
		{"teardown.plan", want, State{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Diff(c.have, c.want)
			golden(t, c.name, p.String())
			if strings.Contains(p.String(), "s1s1") || strings.Contains(p.String(), "m1m1") {
				t.Errorf("the plan shows a CHAP secret:\n%s", p)
			}
		})
	}
}

func TestDiffConverged(t *testing.T) {
	st := mustDesired(t, site)
	if p := Diff(st, st); len(p) != 0 {
		t.Errorf("Diff(desired, desired) = \n%s, want no steps", p)
	}
}

// TestDiffThenApplyConverges applies plans to a model of LIO's state and
// checks one plan always reaches the desired state.
func TestDiffThenApplyConverges(t *testing.T) {
	want := mustDesired(t, site)
	for name, have := range map[string]State{"fresh": {}, "drifted": drifted(t), "teardown": want} {
		target := want
		if name == "teardown" {
			target = State{}
		}
		got := model(have, Diff(have, target))
		if d := cmp.Diff(target, got, cmpState, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: applying the plan leaves (-want +got):\n%s", name, d)
		}
	}
}
