package layering

import (
	"os/exec"
	"strings"
	"testing"
)

// goList runs go list -f format over pkgs and returns its lines.
func goList(t *testing.T, format string, pkgs ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, append([]string{"list", "-e", "-f", format}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", pkgs, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// short names a package relative to the module when it is kiln's.
func short(pkg string) string { return strings.TrimPrefix(pkg, module) }

// full names a package given relative to the module (third-party paths,
// which hold a dot in their first element, stay as they are).
func full(pkg string) string {
	if first, _, _ := strings.Cut(pkg, "/"); strings.Contains(first, ".") {
		return pkg
	}
	return module + pkg
}

// closure lists the non-standard packages roots depend on, themselves
// included, relative to the module where they are kiln's.
func closure(t *testing.T, roots ...string) []string {
	t.Helper()
	var pkgs []string
	for _, r := range roots {
		pkgs = append(pkgs, full(r))
	}
	var deps []string
	for _, p := range goList(t, "{{if not .Standard}}{{.ImportPath}}{{end}}", append([]string{"-deps"}, pkgs...)...) {
		if p != "" {
			deps = append(deps, short(p))
		}
	}
	return deps
}

// under reports whether pkg is one of pkgs or below one of them.
func under(pkg string, pkgs []string) bool {
	for _, p := range pkgs {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// agentInit are the init/ packages the live image's kiln-agent runs as PID 1
// with: modprobe, coldplug, DHCP at boot, the reaper, the halt calls.
var agentInit = []string{"init/kmod", "init/coldplug", "init/bootnet", "init/reap", "init/shutdown"}

// agentLibs are what the vetting agent's packages may depend on.
var agentLibs = []string{"services/vetting", "internal/cmdline", "golang.org/x/sys", "golang.org/x/crypto", "gopkg.in/yaml.v3"}

// closures keep the binaries that must stay small, or work when all else is
// broken, to a few dependencies: the whole closure of roots must lie under
// allow (or in the closure of also), and none of it under deny.
var closures = []struct {
	name         string
	roots, allow []string
	also, deny   []string
	why          string
}{
	{
		name:  "init",
		roots: []string{"init/..."},
		deny:  []string{"services/api", "services/store"},
		why:   "PID 1 must boot without the API or the database",
	},
	{
		name:  "kiln-stage1",
		roots: []string{"cmd/kiln-stage1"},
		allow: []string{"cmd/kiln-stage1", "init/stage1", "init/kmod", "init/coldplug", "init/blockdev", "init/gpt", "init/isofs", "init/dm", "init/switchroot",
			"image/verity", // the kiln.verity format, standard library only
			"internal/cmdline", "golang.org/x/sys"},
		why: "keep the initramfs binary to the standard library, x/sys and the stage-1 packages",
	},
	{
		name:  "kiln-diskless",
		roots: []string{"cmd/kiln-diskless"},
		allow: []string{"cmd/kiln-diskless", "init", "internal/cmdline", "internal/atomicfile", "internal/resolvconf", "internal/dhcplease",
			"golang.org/x/sys", "golang.org/x/net", "golang.org/x/sync", "github.com/insomniacslk/dhcp", "github.com/vishvananda",
			"github.com/mdlayher", "github.com/josharian/native", "github.com/pierrec/lz4", "github.com/u-root/uio"},
		why: "keep the diskless initramfs binary to the standard library, x/sys, the DHCP and netlink libraries, kiln's init packages and the leaf helpers",
	},
	{
		name:  "init/console",
		roots: []string{"init/console"},
		allow: []string{"init/console", "partitions", "services/config", "services/internal/exportname", // via services/config
			"gopkg.in/yaml.v3", "golang.org/x/sys/unix"},
		why: "the recovery console runs in PID 1 and must work when everything else is broken",
	},
	{
		name: "the vetting agent",
		roots: []string{"services/vetting/agent", "services/vetting/agent/sshhold", "services/vetting/inventory", "services/vetting/inventory/smbios",
			"services/vetting/protocol", "services/vetting/spec", "services/vetting/stages", "services/vetting/verdict"},
		allow: agentLibs,
		why:   "keep the live image's agent to the standard library, internal/cmdline, x/sys, x/crypto and yaml.v3: no SQLite, no appliance services, nothing from init/",
	},
	{
		name:  "kiln-agent",
		roots: []string{"cmd/kiln-agent"},
		allow: append([]string{"cmd/kiln-agent"}, agentLibs...),
		also:  agentInit,
		why:   "the live image's PID 1 may add only " + strings.Join(agentInit, ", ") + " and their imports",
	},
}

func TestClosures(t *testing.T) {
	for _, c := range closures {
		t.Run(c.name, func(t *testing.T) {
			also := map[string]bool{}
			if len(c.also) > 0 {
				for _, p := range closure(t, c.also...) {
					also[p] = true
				}
			}
			for _, p := range closure(t, c.roots...) {
				if c.allow != nil && !under(p, c.allow) && !also[p] || under(p, c.deny) {
					t.Errorf("%s depends on %s; %s", c.name, p, c.why)
				}
			}
		})
	}
}

// onlyIn names imports (standard or third-party) that a single package of
// kiln may have, tests included.
var onlyIn = []struct {
	imports []string
	pkg     string
	why     string
}{
	{[]string{"database/sql", "modernc.org/sqlite", "github.com/mattn/go-sqlite3"}, "services/store",
		"only services/store may talk SQL (add a typed method there)"},
}

func TestOnlyIn(t *testing.T) {
	lines := goList(t, `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, module+"...")
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		from := short(f[0])
		for _, rule := range onlyIn {
			if from == rule.pkg {
				continue
			}
			for _, imp := range f[1:] {
				if under(imp, rule.imports) {
					t.Errorf("%s imports %s; %s", from, imp, rule.why)
				}
			}
		}
	}
}
