package nfs

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// hall is two rooms of diskless PCs, a pinned tester and machines the
// exports must refuse.
var hall = Input{
	DataDir:    "/data",
	ExportRoot: "/data/nfs",
	Subnets:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.1.0.0/24")},
	Roots: []RootImage{
		{Name: "contest", Version: 1}, {Name: "contest", Version: 2, Promoted: true}, {Name: "staff", Version: 7, Promoted: true},
		{Name: "new", Version: 1},
	},
	Homes: []string{"contestants", "staff"},
	Hosts: []Host{
		{Name: "pc-02", Addrs: addrs("10.0.0.12"), Root: "contest", Home: "contestants"},
		{Name: "pc-01", Addrs: addrs("10.0.0.11", "10.1.0.11"), Root: "contest", Home: "contestants"},
		{Name: "tester", Addrs: addrs("10.1.0.50"), Root: "contest@1"},
		{Name: "admin", Addrs: addrs("::ffff:10.1.0.2"), Root: "staff", Home: "staff"},
		{Name: "outside", Addrs: addrs("192.168.5.5"), Root: "contest"},
		{Name: "unpromoted", Addrs: addrs("10.0.0.90"), Root: "new"},
		{Name: "nohome", Addrs: addrs("10.0.0.91"), Home: "guests"},
		{Name: "noaddr", Root: "contest"},
		{Name: "twin", Addrs: addrs("10.0.0.12"), Root: "contest"},
		{Name: "vetted", Addrs: addrs("10.0.0.200")}, // no diskless use: not a client
	},
}

func TestMakePlanGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
	}{
		{"hall", hall},
		{"empty", Input{DataDir: "/data", ExportRoot: "/data/nfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(tc.in)
			if err != nil {
				t.Fatalf("MakePlan = %v", err)
			}
			golden := filepath.Join("testdata", tc.name+".plan")
			if *update {
				if err := os.WriteFile(golden, []byte(p.Text()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if d := cmp.Diff(string(want), p.Text()); d != "" {
				t.Errorf("MakePlan(%s) differs from %s (-want +got):\n%s", tc.name, golden, d)
			}
			again, _ := MakePlan(tc.in)
			if again.Text() != p.Text() {
				t.Errorf("MakePlan is not deterministic")
			}
		})
	}
}

func TestMakePlanRefusesExposingData(t *testing.T) {
	for _, tc := range []struct {
		name, data, root string
	}{
		{"the data partition itself", "/data", "/data"},
		{"outside", "/data", "/srv/nfs"},
		{"a sibling with the same prefix", "/data", "/database/nfs"},
		{"relative", "/data", "nfs"},
		{"unclean", "/data", "/data/nfs/../nfs"},
		{"root", "/data", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MakePlan(Input{DataDir: tc.data, ExportRoot: tc.root})
			if !errors.Is(err, ErrExposesData) {
				t.Errorf("MakePlan(export root %q) = %v, want ErrExposesData", tc.root, err)
			}
		})
	}
	if _, err := MakePlan(Input{DataDir: "/data", ExportRoot: "/data/nfs", Roots: []RootImage{{Name: "..", Version: 1}}}); !errors.Is(err, ErrExposesData) {
		t.Errorf("MakePlan(root image \"..\") = %v, want ErrExposesData", err)
	}
	if _, err := MakePlan(Input{DataDir: "/data", ExportRoot: "/data/nfs", Homes: []string{"a/../../x"}}); !errors.Is(err, ErrExposesData) {
		t.Errorf("MakePlan(home with slashes) = %v, want ErrExposesData", err)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"contest", true}, {"debian-12.5_x", true}, {"", false}, {".hidden", false}, {"-x", false},
		{"a/b", false}, {"Upper", false}, {"..", false}, {"with space", false},
	} {
		if err := ValidName("name", tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
