package tftp

import (
	"bytes"
	"context"
	"fmt"
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
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "atftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 atftp)", tool)
		}
	}
	root := ipxeRoot(t)
	id := os.Getpid() % 10000
	ns := fmt.Sprintf("kiln-tftp-%d", id)
	hostIf, nsIf := fmt.Sprintf("ktf%dh", id), fmt.Sprintf("ktf%dn", id)
	octet := 1 + os.Getpid()%250
	hostIP, nsIP := fmt.Sprintf("10.254.%d.1", octet), fmt.Sprintf("10.254.%d.2", octet)

	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Skipf("setting up the namespace: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	run("ip", "link", "add", hostIf, "mtu", "1400", "type", "veth", "peer", "name", nsIf, "mtu", "1400")
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	run("ip", "-n", ns, "link", "set", nsIf, "up")
	run("ip", "-n", ns, "link", "set", "lo", "up")

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
