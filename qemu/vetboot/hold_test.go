package vetboot

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
)

// TestMain lets the test binary relay one connection: QEMU's guestfwd
// starts "vetboot.test -kiln-relay ADDR" per connection the guest opens to
// the appliance address, with the connection on stdin and stdout.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "-kiln-relay" {
		os.Exit(relay(os.Args[2]))
	}
	os.Exit(m.Run())
}

func relay(addr string) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(c, os.Stdin)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(os.Stdout, c)
	return 0
}

// appliance is the orchestrator's side for one run: a failing CPU-only
// assignment that holds the host with key, every event kept, and a
// release switch.
type appliance struct {
	key string

	mu sync.Mutex
	// hello, events, released and report are guarded by mu.
	hello    *protocol.Hello
	events   []protocol.Event
	released bool
	report   *protocol.Report
}

func (a *appliance) Hello(_ context.Context, _ string, h protocol.Hello) (protocol.Assignment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hello = &h
	return protocol.Assignment{HoldOnFailure: true, HoldKey: a.key, After: protocol.AfterPoweroff,
		Spec:     "expect:\n  - fact: cpu.threads\n    min: 100000\n",
		Settings: &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: time.Second}}}, nil
}

func (a *appliance) Record(_ context.Context, _ string, m protocol.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case *protocol.Events:
		if a.released {
			return protocol.ErrRunOver
		}
		a.events = append(a.events, m.Events...)
	case *protocol.Report:
		a.report = m
	}
	return nil
}

func (a *appliance) holding() *protocol.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e.Kind == protocol.EventHolding {
			return &e
		}
	}
	return nil
}

// TestLiveImageHolds boots the live image against a loopback orchestrator:
// the guest's only NIC is QEMU user networking with restrict=on, whose
// DHCP gives it 10.0.2.15; its connections to 10.0.2.100:8080 are relayed
// to the test's protocol server and host port forwards reach its SSH. The
// run fails its spec, holds, an operator logs in (Go's client and
// OpenSSH), the release ends the hold and the machine powers off.
func TestLiveImageHolds(t *testing.T) {
	liveImage(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	app := &appliance{key: string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-live", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: app}))
	defer srv.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(self, ", ") {
		t.Skipf("test binary path %q has a comma or space; QEMU's guestfwd cannot run it", self)
	}
	sshPort, err := qemu.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	netdev := fmt.Sprintf("user,id=vet,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:%s -kiln-relay %s,hostfwd=tcp:127.0.0.1:%d-:22",
		self, srv.Listener.Addr(), sshPort)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	vm := startLive(t, ctx, "kiln.mode=vet kiln.server=http://10.0.2.100:8080 kiln.token="+tok+" kiln.host=vetlive kiln.fail_delay=1s",
		// virtio-rng: TCG's CPU has no RDRAND, and DHCP and the host key
		// wait for a seeded random pool.
		qemu.Config{Extra: []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=vet,mac=52:54:00:6b:6c:71,romfile=",
			"-device", "virtio-rng-pci"}})
	expect(t, ctx, vm, start, 2*time.Minute,
		`kiln-agent: live image up`,
		`kiln-agent: network up on \S+ 10\.0\.2\.15/24`,
		`kiln-agent: holding: ssh root@10\.0\.2\.15$`,
		`kiln-agent: host key: ssh-ed25519 `)

	var ev *protocol.Event
	for deadline := time.Now().Add(30 * time.Second); ev == nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		ev = app.holding()
	}
	if ev == nil || ev.Addr != "10.0.2.15:22" {
		t.Fatalf("holding event %+v, want one announcing 10.0.2.15:22", ev)
	}
	app.mu.Lock()
	hello, report := app.hello, app.report
	app.mu.Unlock()
	if hello == nil || len(hello.Addrs) != 1 || hello.Addrs[0] != "10.0.2.15/24" || hello.Host != "vetlive" {
		t.Errorf("hello = %+v, want host vetlive with address 10.0.2.15/24", hello)
	}
	if report == nil || report.Verdict != "FAIL" {
		t.Errorf("report = %+v, want FAIL", report)
	}

	// Go's SSH client, trusting the host key from the holding event.
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ev.HostKey))
	if err != nil {
		t.Fatalf("holding event's host key %q: %v", ev.HostKey, err)
	}
	fwd := net.JoinHostPort("127.0.0.1", strconv.Itoa(sshPort))
	c, err := ssh.Dial("tcp", fwd, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("SSH login to the held live image: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("echo live-$((6*7)); ls /lib/modules; lsmod")
	t.Logf("held host says:\n%s", out)
	if err != nil || !strings.Contains(string(out), "live-42") || !strings.Contains(string(out), "virtio_net") {
		t.Errorf("command on the held host = %v, want live-42 and virtio_net loaded", err)
	}

	// OpenSSH, with a known_hosts line made from the event.
	if sshBin, err := exec.LookPath("ssh"); err == nil {
		dir := t.TempDir()
		block, err := ssh.MarshalPrivateKey(priv, "vetboot")
		if err != nil {
			t.Fatal(err)
		}
		keyFile, known := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", sshPort, ev.HostKey)), 0o600); err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(sctx, sshBin, "-F", "/dev/null", "-i", keyFile, "-o", "IdentitiesOnly=yes",
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known,
			"-p", strconv.Itoa(sshPort), "-tt", "root@127.0.0.1", "ls -l /proc/self/fd/0; uname -r").CombinedOutput()
		scancel()
		if err != nil || !strings.Contains(string(out), "/dev/pts/") {
			t.Errorf("OpenSSH on the held host: %v\n%s", err, out)
		}
	}

	// The release: the next heartbeat (15 s) gets 410, the hold ends and
	// the assignment's poweroff follows.
	app.mu.Lock()
	app.released = true
	app.mu.Unlock()
	expect(t, ctx, vm, start, time.Minute, `kiln-agent: poweroff in `, `kiln-agent: reached poweroff`)
	poweredOff(t, vm, start)
}
