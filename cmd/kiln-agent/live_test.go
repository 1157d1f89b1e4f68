package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/agent/sshhold"
	"kiln.dev/kiln/services/vetting/protocol"
)

// fakeSys is the kernel side of the live image in a test: the NICs and
// their addresses appear after a number of polls.
type fakeSys struct {
	cmdline  string
	mountErr []error
	modules  []string
	nics     []string
	// addrAfter is how many Addrs calls return nothing before addrs.
	addrAfter int
	addrs     map[string][]string
	noRandom  bool

	mu sync.Mutex
	// calls, network and halted are guarded by mu.
	calls   int
	network string
	halted  []string
}

func (f *fakeSys) Mount() []error  { return f.mountErr }
func (f *fakeSys) Cmdline() string { return f.cmdline }
func (f *fakeSys) Drivers(context.Context) ([]string, error) {
	return append([]string(nil), f.modules...), nil
}
func (f *fakeSys) NICs() []string { return f.nics }
func (f *fakeSys) Network(_ context.Context, hostname string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.network = hostname
}

func (f *fakeSys) Addrs() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.addrAfter {
		return nil
	}
	return f.addrs
}

func (f *fakeSys) RandomReady() bool { return !f.noRandom }

func (f *fakeSys) Halt(action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.halted = append(f.halted, action)
	return nil
}

// console is a goroutine-safe console.
type console struct {
	mu sync.Mutex
	// b is guarded by mu.
	b bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// newLive returns a live image run on sys whose sleeps are recorded, not
// slept, except those shorter than a second (the agent's own retries are
// real).
func newLive(t *testing.T, sys *fakeSys) (*live, *console, *[]time.Duration) {
	t.Helper()
	out := &console{}
	var slept []time.Duration
	var mu sync.Mutex
	l := &live{sys: sys, out: out, log: slog.New(slog.NewTextHandler(out, nil)), cfg: defaultLiveConfig(),
		runAgent: agent.Run, version: "test",
		sleep: func(ctx context.Context, d time.Duration) bool {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
			return ctx.Err() == nil
		}}
	l.cfg.HoldListen = "127.0.0.1:0"
	l.hold = func(server string, holding func(addr, hostKey string)) func(context.Context, agent.HoldRequest) error {
		return sshhold.Hold(sshhold.HoldOptions{Listen: l.cfg.HoldListen, ServerURL: server, Holding: holding, Logger: l.log})
	}
	return l, out, &slept
}

// orchestrator hands out one assignment and releases holds at once.
type orchestrator struct{ a protocol.Assignment }

func (o orchestrator) Hello(context.Context, string, protocol.Hello) (protocol.Assignment, error) {
	return o.a, nil
}

func (o orchestrator) Record(_ context.Context, _ string, m protocol.Message) error {
	if ev, ok := m.(*protocol.Events); ok {
		for _, e := range ev.Events {
			if e.Kind == protocol.EventHolding {
				return protocol.ErrRunOver // released as soon as it is announced
			}
		}
	}
	return nil
}

func appliance(t *testing.T, a protocol.Assignment) (url, token string) {
	t.Helper()
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-9", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: orchestrator{a}}))
	t.Cleanup(srv.Close)
	return srv.URL, tok
}

func failingCPU() protocol.Assignment {
	return protocol.Assignment{Spec: "expect:\n  - fact: cpu.threads\n    min: 100000\n", Settings: settings()}
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
}

func TestLiveRunThenAfter(t *testing.T) {
	a := failingCPU()
	a.After = protocol.AfterReboot
	url, tok := appliance(t, a)
	sys := &fakeSys{cmdline: "kiln.mode=vet kiln.server=" + url + " kiln.token=" + tok + " kiln.host=n9 kiln.mac=52:54:00:00:00:09",
		modules: []string{"virtio_net", "e1000e"}, nics: []string{"eth0", "eth1"}, addrAfter: 12,
		addrs: map[string][]string{"eth1": {"10.9.0.50/24"}}}
	l, out, slept := newLive(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	after, delay := l.run(ctx)
	if after != protocol.AfterReboot || delay != l.cfg.AfterDelay {
		t.Errorf("run = %s after %s, want reboot after %s", after, delay, l.cfg.AfterDelay)
	}
	wantLines(t, out.String(),
		"kiln-agent: live image up",
		"kiln-agent: loaded 2 modules: e1000e virtio_net\n",
		"kiln-agent: waiting for a DHCP lease on eth0 eth1 (0s)\n",
		"kiln-agent: waiting for a DHCP lease on eth0 eth1 (10s)\n",
		"kiln-agent: network up on eth1 10.9.0.50/24\n",
		"kiln-agent: run run-9 verdict FAIL\n",
		"kiln-agent: finding: FAIL spec: cpu.threads: expected ≥ 100000")
	if sys.network != "n9" {
		t.Errorf("network brought up with host name %q, want n9", sys.network)
	}
	if err := l.finish(ctx, after, delay); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"reboot"}, sys.halted); diff != "" {
		t.Errorf("halts (-want +got):\n%s", diff)
	}
	wantLines(t, out.String(), "kiln-agent: reboot in 10s\n", "kiln-agent: reached reboot\n")
	t.Logf("console:\n%s", out)
	if got := (*slept)[len(*slept)-1]; got != 10*time.Second {
		t.Errorf("last sleep %s, want the 10 s after-delay", got)
	}
}

func TestLiveHolds(t *testing.T) {
	k := testKey(t)
	a := failingCPU()
	a.HoldOnFailure, a.HoldKey = true, k
	url, tok := appliance(t, a)
	sys := &fakeSys{cmdline: "kiln.server=" + url + " kiln.token=" + tok, nics: []string{"eth0"},
		addrs: map[string][]string{"eth0": {"127.0.0.1/8"}}}
	l, out, _ := newLive(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	after, _ := l.run(ctx)
	if after != protocol.AfterPoweroff {
		t.Errorf("after a released hold: %s, want the default poweroff", after)
	}
	got := out.String()
	wantLines(t, got, "kiln-agent: holding: ssh -p ", " root@127.0.0.1\n", "kiln-agent: host key: ssh-ed25519 AAAA",
		"kiln-agent: run run-9 verdict FAIL\n")
	if v, h := strings.Index(got, "verdict FAIL"), strings.Index(got, "holding: "); v > h || strings.Count(got, "verdict FAIL") != 1 {
		t.Errorf("the verdict is not shown once, before the hold:\n%s", got)
	}
}

func TestLiveFailures(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		sys           *fakeSys
		want          []string
	}{
		{"unreachable appliance", "kiln.server=http://127.0.0.1:1 kiln.token=x kiln.hello_timeout=1s kiln.fail_delay=30s",
			&fakeSys{noRandom: true}, []string{
				"kiln-agent: the kernel's random number generator is not seeded yet",
				"kiln-agent: no wired NIC found",
				"kiln-agent: cannot reach the appliance at http://127.0.0.1:1: ",
				"Check the cable"}},
		{"no run on the command line", "console=ttyS0 kiln.fail_delay=30s", &fakeSys{nics: []string{"eth0"}, addrs: map[string][]string{"eth0": {"10.0.0.9/24"}}},
			[]string{"kiln-agent: network up on eth0 10.0.0.9/24", "kiln-agent: cannot start: ", "no server URL", "start a vetting run for this host"}},
		{"no lease, refused token", "kiln.token=stolen kiln.hello_timeout=5s kiln.fail_delay=30s kiln.fail_delay=soon",
			&fakeSys{nics: []string{"eth0"}, addrAfter: 1 << 30}, []string{
				`kiln.fail_delay="soon" is not a duration (write e.g. kiln.fail_delay=90s); using 30s`,
				"kiln-agent: no DHCP lease after 2m0s on eth0",
				"kiln-agent: the appliance refused this run's token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := tc.sys
			sys.cmdline = tc.cmdline
			if strings.Contains(tc.cmdline, "stolen") {
				url, _ := appliance(t, failingCPU())
				sys.cmdline += " kiln.server=" + url
			}
			l, out, _ := newLive(t, sys)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			after, delay := l.run(ctx)
			if after != protocol.AfterPoweroff || delay != 30*time.Second {
				t.Errorf("run = %s after %s, want poweroff after the 30 s fail delay", after, delay)
			}
			wantLines(t, out.String(), append([]string{"kiln-agent: live image up"}, tc.want...)...)
		})
	}
}

func TestLiveParams(t *testing.T) {
	c := defaultLiveConfig()
	problems := liveParams("kiln.hello_timeout=45s kiln.fail_delay=-3s kiln.host=x kiln.net_wait=5s", &c)
	if c.HelloTimeout != 45*time.Second || c.FailDelay != 2*time.Minute || c.NetWait != 5*time.Second {
		t.Errorf("liveParams: hello %s fail %s net %s, want 45s, the 2m default and 5s", c.HelloTimeout, c.FailDelay, c.NetWait)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "kiln.fail_delay") {
		t.Errorf("liveParams problems = %q, want one naming kiln.fail_delay", problems)
	}
}

// testKey returns a fresh ed25519 public key as an authorized_keys line.
func testKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(k))
}

func TestSSHCommand(t *testing.T) {
	for in, want := range map[string]string{"10.9.0.50:22": "ssh root@10.9.0.50", "10.9.0.50:2222": "ssh -p 2222 root@10.9.0.50"} {
		if got := sshCommand(in); got != want {
			t.Errorf("sshCommand(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestUnknownAfter(t *testing.T) {
	l, out, _ := newLive(t, &fakeSys{})
	if got := l.checkAfter("hibernate"); got != protocol.AfterPoweroff {
		t.Errorf("checkAfter(hibernate) = %s, want poweroff", got)
	}
	wantLines(t, out.String(), `asked for "hibernate"`)
}
