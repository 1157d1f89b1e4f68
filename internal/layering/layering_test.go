package layering

import (
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "kiln.dev/kiln/"

// parts are the top-level folders; a package belongs to the part its path
// starts with.
var parts = []string{"cmd", "appliance", "qemu", "image", "init", "ota", "services", "partitions", "internal"}

// allowed says which other parts each part may import. Leaves (below) may be
// imported from anywhere.
var allowed = map[string][]string{
	"cmd":        {"appliance", "qemu", "image", "init", "ota", "services", "partitions", "internal"},
	"appliance":  {"image", "init", "ota", "services", "partitions", "internal"}, // wires them together for kiln init and kiln serve
	"qemu":       {"image", "init", "ota", "partitions", "internal"},
	"image":      {"partitions", "internal"},
	"init":       {"partitions", "internal"},
	"ota":        {"partitions", "internal"},
	"services":   {"ota", "partitions", "internal"},
	"partitions": {"internal"},
	"internal":   {},
}

// leaves are small packages of one part that any part may import: formats
// and low-level helpers that import only their own part, other leaves,
// partitions and internal/ (checked).
var leaves = []string{
	"image/verity",  // the kiln.verity cmdline and hash-tree format
	"init/blockdev", // block devices and GPT lookups
	"init/gpt",
	"init/isofs", // the ISO 9660 reader: stage 1 finds the live medium, the live install reads its map
	"init/kmod",  // modprobe, used by the vetting agent and the QEMU guest
	"init/coldplug",
	"init/supervisor/supervisorapi", // the control socket's status and log types and its client (API, mgmt)
	"ota/bootentry",                 // the boot entry format: the image writes the first, OTA the rest
	"ota/bundle",                    // the bundle format and its keys: the image bakes the public keys in
	"services/config",               // the kiln.yaml format: PID 1 and the console read it before any service runs
	"services/vetting/spec",         // the expected-spec format: the database checks what it stores
}

// below are packages held to fewer imports than their part: each may
// import only packages under these prefixes (besides the standard library
// and third-party modules).
var below = map[string][]string{
	// The database sits below every service it stores for.
	"services/store": {"services/store/", "services/internal/", "internal/", "partitions", "services/vetting/spec"},
}

// edge is one import of a package of another part.
type edge struct{ from, to string }

func (e edge) String() string { return e.from + " -> " + e.to }

func partOf(pkg string) string {
	p, _, _ := strings.Cut(pkg, "/")
	return p
}

func isLeaf(pkg string) bool {
	for _, l := range leaves {
		if pkg == l || strings.HasPrefix(pkg, l+"/") {
			return true
		}
	}
	return false
}

// imports lists every package of the module (test files excluded) with the
// module's packages it imports, paths relative to the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		from := strings.TrimPrefix(f[0], module)
		m[from] = nil
		for _, imp := range f[1:] {
			if to, ok := strings.CutPrefix(imp, module); ok {
				m[from] = append(m[from], to)
			}
		}
	}
	return m
}

// violations returns the imports that cross parts against the table.
func violations(deps map[string][]string) []edge {
	var bad []edge
	for from, tos := range deps {
		for _, to := range tos {
			if pre, ok := below[from]; ok && !slices.ContainsFunc(pre, func(p string) bool { return strings.HasPrefix(to, p) }) {
				bad = append(bad, edge{from, to})
				continue
			}
			pf, pt := partOf(from), partOf(to)
			if pf == pt {
				continue
			}
			if isLeaf(to) || slices.Contains(allowed[pf], pt) {
				continue
			}
			bad = append(bad, edge{from, to})
		}
	}
	return bad
}

func TestLayering(t *testing.T) {
	deps := imports(t)
	for from := range deps {
		if !slices.Contains(parts, partOf(from)) {
			t.Errorf("package %s is in no part of the layering table; add its folder to parts and allowed", from)
		}
	}
	// A table line naming no package would allow whatever lands there later.
	for _, l := range leaves {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(deps)), func(p string) bool { return p == l || strings.HasPrefix(p, l+"/") }) {
			t.Errorf("leaf %s names no package of the module; delete its line from leaves", l)
		}
	}
	for p := range below {
		if _, ok := deps[p]; !ok {
			t.Errorf("below names %s, which is no package of the module; delete its line", p)
		}
	}
	for _, e := range violations(deps) {
		t.Errorf("%s: %s may not import %s (allowed: %v and the leaves %v); move what both need into a leaf package",
			e, partOf(e.from), partOf(e.to), allowed[partOf(e.from)], leaves)
	}
	// Leaves stay leaves: they import only their own part, other leaves and
	// the bottom (partitions, internal/).
	for from, tos := range deps {
		if !isLeaf(from) {
			continue
		}
		for _, to := range tos {
			if partOf(to) != partOf(from) && !isLeaf(to) && partOf(to) != "internal" && partOf(to) != "partitions" {
				t.Errorf("leaf %s imports %s; a leaf may import only its own part, other leaves, partitions and internal/", from, to)
			}
		}
	}
	// internal/ is below everything: it imports no other part.
	for from, tos := range deps {
		if partOf(from) != "internal" {
			continue
		}
		for _, to := range tos {
			if partOf(to) != "internal" {
				t.Errorf("%s imports %s; internal/ helpers import no other part of kiln", from, to)
			}
		}
	}
}

// TestLayeringCatchesBackEdges shows the table fails an arrow running up.
func TestLayeringCatchesBackEdges(t *testing.T) {
	deps := map[string][]string{
		"init/pid1":        {"services/api", "init/kmod", "internal/atomicfile"},
		"services/dhcp":    {"init/kmod", "services/config"},
		"partitions":       {"image"},
		"internal/x":       {"internal/y"},
		"cmd/kiln":         {"services/mgmt"},
		"image/verity/sub": {"ota/slots", "ota/bundle"},
		"services/store":   {"services/vetting/spec", "services/dhcp", "internal/atomicfile"},
	}
	var got []string
	for _, e := range violations(deps) {
		got = append(got, e.String())
	}
	slices.Sort(got)
	want := []string{"image/verity/sub -> ota/slots", "init/pid1 -> services/api", "partitions -> image", "services/store -> services/dhcp"}
	if !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}
}
