package httpboot

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	testMAC  = "52:54:00:12:34:56"
	testBase = "http://10.0.0.1:8080"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got; go test -update rewrites):\n%s", name, diff)
	}
}

// checkFallsThrough asserts the shape every kiln script must have.
func checkFallsThrough(t *testing.T, name string, b []byte) {
	t.Helper()
	s := string(b)
	if !strings.HasPrefix(s, "#!ipxe\n") {
		t.Errorf("%s does not start with #!ipxe", name)
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "exit 1" {
		t.Errorf("%s ends with %q, want \"exit 1\" so firmware falls through", name, last)
	}
	for _, l := range lines {
		if strings.Contains(l, "exit 0") || strings.TrimSpace(l) == "exit" {
			t.Errorf("%s has a successful exit %q", name, l)
		}
	}
}

func TestGoldenScripts(t *testing.T) {
	p := DefaultProfiles()
	for _, tc := range []struct {
		golden string
		host   Host
	}{
		{"vet.ipxe", Host{Name: "node1", Profile: ProfileVet, Token: "host-tok", RunToken: "tok-123"}},
		{"vet-extra-cmdline.ipxe", Host{Name: "node1", Profile: ProfileVet, Token: "host-tok", RunToken: "tok-123", Cmdline: "kiln.stages=cpu,memory"}},
		{"local.ipxe", Host{Name: "node1", Profile: ProfileLocal, Token: "tok-123"}},
		{"diskless.ipxe", Host{Name: "node2", Profile: ProfileDiskless, Token: "t", RootImage: "contest/2", Home: "lab"}},
		{"diskless-override.ipxe", Host{Name: "node2", Profile: ProfileDiskless, Token: "t",
			Kernel: "images/debian/vmlinuz", Initrd: "images/debian/initrd.img", NFSRoot: "10.0.0.9:/srv/nfs/node2", Cmdline: "quiet kiln.overlay=1G"}},
		{"iscsi.ipxe", Host{Name: "node3", Profile: ProfileISCSI, Token: "t"}},
		{"iscsi-override.ipxe", Host{Name: "node3", Profile: ProfileISCSI, Token: "t", ISCSITarget: "iqn.2004-01.example:disk7"}},
		{"iscsi-chap.ipxe", Host{Name: "node3", Profile: ProfileISCSI, Token: "t", SAN: &SANLogin{
			Target: "iqn.2026-01.example.hall:node3", Initiator: "iqn.2026-01.example.hall:initiator:node3", Username: "node3", Password: "Secret23456789ab"}}},
		{"iscsi-mutual.ipxe", Host{Name: "node3", Profile: ProfileISCSI, Token: "t", SAN: &SANLogin{
			Target: "iqn.2026-01.example.hall:node3", Initiator: "iqn.2004-01.example:my-own-initiator", Username: "node3", Password: "Secret23456789ab",
			ReverseUsername: "kiln", ReversePassword: "Mutual23456789ab"}}},
		{"kernel.ipxe", Host{Name: "node4", Profile: ProfileKernel, Token: "t",
			Kernel: "custom/bzImage", Initrd: "custom/initrd.cpio.gz", Cmdline: "console=ttyS0 root=/dev/sda2 ${custom-var}"}},
		{"kernel-url-no-initrd.ipxe", Host{Name: "node4", Profile: ProfileKernel, Token: "t",
			Kernel: "https://images.example/vmlinuz-6.1", Cmdline: "root=/dev/vda1"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := RenderScript(tc.host, testMAC, testBase, p)
			if err != nil {
				t.Fatalf("RenderScript(%+v) error: %v", tc.host, err)
			}
			golden(t, tc.golden, got)
			checkFallsThrough(t, tc.golden, got)
		})
	}
	t.Run("denied.ipxe", func(t *testing.T) {
		got := RenderDenied("no network boot for " + testMAC + ": unknown machine or wrong token")
		golden(t, "denied.ipxe", got)
		checkFallsThrough(t, "denied.ipxe", got)
	})
	t.Run("default.ipxe", func(t *testing.T) {
		got, err := RenderDefault(testBase)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "default.ipxe", got)
		checkFallsThrough(t, "default.ipxe", got)
	})
}

func TestRenderScriptRefusals(t *testing.T) {
	p := DefaultProfiles()
	for _, tc := range []struct {
		name string
		host Host
		want string
	}{
		{"kernel profile without kernel", Host{Name: "n", Profile: ProfileKernel}, "host n: profile kernel needs a kernel"},
		{"unknown profile", Host{Name: "n", Profile: "warp\n"}, `host n has unknown boot profile "warp?"`},
		{"newline in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: "a\nshell"}, "host n: its cmdline contains control characters"},
		{"iPXE operator in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: "a || shell"}, `host n: its cmdline contains the iPXE operator "||"`},
		{"iPXE and in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: "a && shell"}, `host n: its cmdline contains the iPXE operator "&&"`},
		{"iPXE separator in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: "quiet ; shell"}, `host n: its cmdline contains the iPXE operator ";"`},
		{"iPXE comment in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: "quiet #drops-goto-failed"}, `host n: its cmdline contains "#drops-goto-failed", which iPXE reads as the start of a comment`},
		{"iPXE comment in vet cmdline", Host{Name: "n", Profile: ProfileVet, RunToken: "tok-123", Cmdline: "#"}, `host n: its cmdline contains "#", which iPXE reads as the start of a comment`},
		{"iPXE quoting in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: `a" "||`}, `host n: its cmdline contains "\"", which iPXE reads as quoting`},
		{"iPXE escape in cmdline", Host{Name: "n", Profile: ProfileKernel, Kernel: "k", Cmdline: `a\ ;`}, `host n: its cmdline contains "\\", which iPXE reads as quoting`},
		{"path escape", Host{Name: "n", Profile: ProfileKernel, Kernel: "../../etc/shadow"}, "host n: its kernel is not a path below the files root"},
		{"absolute path", Host{Name: "n", Profile: ProfileKernel, Kernel: "/etc/shadow"}, "host n: its kernel is not a path below the files root"},
		{"URL with spaces", Host{Name: "n", Profile: ProfileKernel, Kernel: "http://x/a b"}, "host n: its kernel URL contains spaces"},
		{"vet without token", Host{Name: "n", Profile: ProfileVet}, "host n has no usable run token"},
		{"vet with odd token", Host{Name: "n", Profile: ProfileVet, Token: "t", RunToken: "a b"}, "host n has no usable run token"},
		{"diskless bad nfs root", Host{Name: "n", Profile: ProfileDiskless, NFSRoot: "nopath"}, `host n: nfs root "nopath" is not server:/path`},
		{"diskless nfs root with options", Host{Name: "n", Profile: ProfileDiskless, NFSRoot: "10.0.0.1:/r,vers=3"}, `host n: nfs root "10.0.0.1:/r,vers=3" is not server:/path`},
		{"diskless without root image", Host{Name: "n", Profile: ProfileDiskless}, "host n has the diskless profile but no root image: give it one (kiln hosts add/import --root-image NAME) or its role one (provisioning.nfs.roles)"},
		{"diskless root image not promoted", Host{Name: "n", Profile: ProfileDiskless, RootError: "root image x has no promoted version"}, "host n: root image x has no promoted version"},
		{"diskless root image without version", Host{Name: "n", Profile: ProfileDiskless, RootImage: "contest"}, `host n: root image "contest" is not <name>/<version>`},
		{"diskless root image escaping", Host{Name: "n", Profile: ProfileDiskless, RootImage: "../x"}, `host n: root image "../x" is not <name>/<version>`},
		{"diskless home with a path", Host{Name: "n", Profile: ProfileDiskless, RootImage: "r/1", Home: "a/b"}, `host n: home "a/b" is not a plain name`},
		{"no name", Host{Profile: ProfileLocal}, "host record has no usable name"},
		{"CHAP secret with a space", Host{Name: "n", Profile: ProfileISCSI, SAN: &SANLogin{Target: "iqn.2026-01.a:n", Initiator: "iqn.2026-01.a:i", Username: "n", Password: "pass word"}},
			"host n: its CHAP credentials are empty or hold characters an iPXE script cannot carry; make new ones with kiln volumes chap n"},
		{"CHAP secret with a setting", Host{Name: "n", Profile: ProfileISCSI, SAN: &SANLogin{Target: "iqn.2026-01.a:n", Initiator: "iqn.2026-01.a:i", Username: "n", Password: "${net0/mac}"}},
			"host n: its CHAP credentials are empty or hold characters an iPXE script cannot carry; make new ones with kiln volumes chap n"},
		{"CHAP without secret", Host{Name: "n", Profile: ProfileISCSI, SAN: &SANLogin{Target: "iqn.2026-01.a:n", Initiator: "iqn.2026-01.a:i", Username: "n"}},
			"host n: its CHAP credentials are empty or hold characters an iPXE script cannot carry; make new ones with kiln volumes chap n"},
		{"mutual CHAP without secret", Host{Name: "n", Profile: ProfileISCSI, SAN: &SANLogin{Target: "iqn.2026-01.a:n", Initiator: "iqn.2026-01.a:i", Username: "n", Password: "p", ReverseUsername: "kiln"}},
			"host n: its CHAP credentials are empty or hold characters an iPXE script cannot carry; make new ones with kiln volumes chap n"},
		{"initiator with a setting", Host{Name: "n", Profile: ProfileISCSI, SAN: &SANLogin{Target: "iqn.2026-01.a:n", Initiator: "iqn.2026-01.a:${x}", Username: "n", Password: "p"}},
			`host n: iSCSI target "iqn.2026-01.a:n" on "10.0.0.1" is unusable`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderScript(tc.host, testMAC, testBase, p)
			if err == nil || err.Error() != tc.want {
				t.Errorf("RenderScript(%+v) error = %v, want %q", tc.host, err, tc.want)
			}
		})
	}
}

func TestCanonicalMAC(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"52:54:00:12:34:56", "52:54:00:12:34:56", true},
		{"52-54-00-12-34-56", "52:54:00:12:34:56", true},
		{"52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef", true},
		{"5254.0012.3456", "52:54:00:12:34:56", true},
		{"525400123456", "52:54:00:12:34:56", true}, // iPXE ${net0/mac:hexraw}
		{"default", "", false},
		{"", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := CanonicalMAC(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("CanonicalMAC(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzRenderScript(f *testing.F) {
	f.Add("node1", "vet", "tok", "k", "i", "quiet", "", "")
	f.Add("n", "kernel", "t", "http://x/k", "", "a || b", "", "")
	f.Add("n", "diskless", "t", "", "", "", "1.2.3.4:/x", "")
	f.Add("n", "iscsi", "t", "", "", "", "", "iqn.x:y")
	f.Fuzz(func(t *testing.T, name, profile, token, kernel, initrd, cmdline, nfs, iqn string) {
		h := Host{Name: name, Profile: profile, Token: token, RunToken: token, Kernel: kernel, Initrd: initrd, Cmdline: cmdline, NFSRoot: nfs, ISCSITarget: iqn}
		b, err := RenderScript(h, testMAC, testBase, DefaultProfiles())
		if err != nil {
			b = RenderDenied(err.Error())
		}
		s := string(b)
		if !strings.HasPrefix(s, "#!ipxe\n") || !strings.HasSuffix(s, "\nexit 1\n") {
			t.Fatalf("script for %+v does not start with #!ipxe and end with exit 1:\n%s", h, s)
		}
		// Every line must be one the templates produce: no injected commands.
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			first := strings.Fields(l + " x")[0]
			switch first {
			case "#!ipxe", "#", "echo", "kernel", "initrd", "boot", "exit", "iseq", "sanboot", "set", "x":
			default:
				if !strings.HasPrefix(l, ":") {
					t.Fatalf("script for %+v has unexpected line %q", h, l)
				}
			}
		}
	})
}
