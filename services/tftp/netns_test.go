package tftp

import (
	"bytes"
	"context"
	"fmt"
	"kiln.dev/kiln/services/internal/netnstest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetnsMTU (tier 3) serves a client in a network namespace over a veth
// with MTU 1400: the negotiated blksize must be 1400 - 32 = 1368 even when
// the client asks for more, so no DATA packet is fragmented.
func TestNetnsMTU(t *testing.T) {
	netnstest.Require(t, "atftp")
	root := ipxeRoot(t)
	octet := 1 + os.Getpid()%250
	hostIP, nsIP := fmt.Sprintf("10.254.%d.1", octet), fmt.Sprintf("10.254.%d.2", octet)
	link := netnstest.NewHostLink(t, "kiln-tftp-", 1400, hostIP+"/30", nsIP+"/30")
	ns := link.Name

	srv := startServer(t, Options{Root: root, Listen: hostIP + ":0"})
	want, _ := os.ReadFile(filepath.Join(root, "ipxe.efi"))
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"netns", "exec", ns, "atftp", "--trace", "--tftp-timeout", "1", "--option", "blksize 9000", "--option", "tsize 0",
		"-g", "-r", "ipxe.efi", "-l", out, hostIP, srv.port}
	trace, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, firstLines(string(trace), 20))
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Errorf("atftp over the veth got %d bytes differing from ipxe.efi (%d bytes)", len(got), len(want))
	}
	if !strings.Contains(string(trace), "blksize: 1368") {
		t.Errorf("atftp over an MTU 1400 veth did not negotiate blksize 1368:\n%s", firstLines(string(trace), 10))
	}
	waitEvent(t, srv, "ipxe.efi", func(ev Event) bool { return ev.Client.String() == nsIP && ev.Bytes == int64(len(want)) })
}
