package diskless

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the diskless initramfs binary small and out of the
// appliance's services: the standard library, x/sys and x/net, the DHCP
// client and netlink libraries bootnet uses, and kiln's init packages.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "kiln.dev/kiln/cmd/kiln-diskless").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"kiln.dev/kiln/cmd/kiln-diskless", "kiln.dev/kiln/init/", "golang.org/x/sys/", "golang.org/x/net/",
		"golang.org/x/sync/", "github.com/insomniacslk/dhcp/", "github.com/vishvananda/", "github.com/mdlayher/",
		"github.com/josharian/native", "github.com/pierrec/lz4/", "github.com/u-root/uio/"}
	for _, p := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || p == a || strings.HasPrefix(p, a)
		}
		if !ok {
			t.Errorf("kiln-diskless depends on %s; keep the initramfs binary to the standard library, x/sys, the DHCP and netlink libraries and kiln's init packages", p)
		}
	}
}
