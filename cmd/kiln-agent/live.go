package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	kcmdline "kiln.dev/kiln/internal/cmdline"
	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/protocol"
)

// The live image: kiln-agent is /init of the vetting initrd the appliance
// network-boots machines into. As PID 1 it mounts the kernel file systems,
// loads drivers for the devices present, brings up DHCP on every wired NIC,
// runs the agent with the kernel command line's kiln.* settings, holds the
// host over SSH when the run asks, and then does what the assignment says
// (Assignment.After: poweroff by default, reboot, or stay).
//
// Failures are printed on the console with what to do, and the machine
// powers off after a countdown (kiln.fail_delay, default 2 minutes) rather
// than looping: a machine that cannot reach its appliance, or booted the
// image without a run, must not sit in a rack burning power, and a visible
// message plus a dark machine is what an operator walking the floor
// notices. Its hello is retried for kiln.hello_timeout (default 10
// minutes) first, so a slow DHCP server or a switch port still coming up
// does not end the run.

// liveConfig tunes the live image's PID 1.
type liveConfig struct {
	// NetWait bounds the wait for a first DHCP lease before the agent
	// starts anyway (its hello keeps retrying; kiln.net_wait); NoNICWait is
	// how long NICs may take to appear after their drivers loaded.
	NetWait, NoNICWait time.Duration
	// Poll is the network wait's polling interval; Progress how often it
	// prints that it is still waiting.
	Poll, Progress time.Duration
	// HelloTimeout is the agent's (kiln.hello_timeout).
	HelloTimeout time.Duration
	// FailDelay is the countdown after a failure (kiln.fail_delay);
	// AfterDelay the pause before Assignment.After once a run is over.
	FailDelay, AfterDelay time.Duration
	// HoldListen is the hold's SSH listen address (default ":22").
	HoldListen string
	// Debug logs at debug level (kiln.log=debug): DHCP attempts, modules.
	Debug bool
}

func defaultLiveConfig() liveConfig {
	return liveConfig{NetWait: 2 * time.Minute, NoNICWait: 15 * time.Second, Poll: time.Second,
		Progress: 10 * time.Second, HelloTimeout: 10 * time.Minute, FailDelay: 2 * time.Minute,
		AfterDelay: 10 * time.Second, HoldListen: ":22"}
}

// liveParams applies the live image's own kernel command line knobs
// (kiln.hello_timeout=, kiln.fail_delay=, kiln.net_wait=; Go durations) to
// c and returns the problems found, each naming the parameter and the fix.
func liveParams(cmdline string, c *liveConfig) []string {
	var problems []string
	for _, p := range kcmdline.Parse(cmdline) {
		k, v := p.Key, p.Value
		var dst *time.Duration
		switch k {
		case "kiln.log":
			if c.Debug = v == "debug"; !c.Debug && v != "info" {
				problems = append(problems, fmt.Sprintf("kiln.log=%q: use kiln.log=debug or kiln.log=info", v))
			}
			continue
		case "kiln.hello_timeout":
			dst = &c.HelloTimeout
		case "kiln.fail_delay":
			dst = &c.FailDelay
		case "kiln.net_wait":
			dst = &c.NetWait
		default:
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			problems = append(problems, fmt.Sprintf("%s=%q is not a duration (write e.g. %s=90s); using %s", k, v, k, *dst))
			continue
		}
		*dst = d
	}
	return problems
}

// liveSys is the kernel side of the live image; liveLinux is the real one.
type liveSys interface {
	// Mount mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /run and /tmp;
	// it returns one error per failed mount.
	Mount() []error
	// Cmdline is the kernel command line (/proc/cmdline).
	Cmdline() string
	// Drivers loads the modules of the devices present and keeps loading
	// them for hotplugged ones until ctx ends; it returns those loaded.
	Drivers(ctx context.Context) ([]string, error)
	// NICs lists the wired Ethernet NICs.
	NICs() []string
	// Network keeps a DHCP lease on every wired NIC until ctx ends.
	Network(ctx context.Context, hostname string)
	// Addrs returns the IPv4 addresses ("10.9.0.50/24") of each NIC that has any.
	Addrs() map[string][]string
	// RandomReady reports whether the kernel's random number generator is
	// seeded (DHCP transaction IDs and the SSH host key wait for it).
	RandomReady() bool
	// Halt stops every other process, syncs and powers off or reboots
	// (protocol.AfterPoweroff or AfterReboot); it returns only on failure.
	Halt(action string) error
}

// live is one run of the live image.
type live struct {
	sys liveSys
	// out is the console; log writes there too, at level (debug with
	// kiln.log=debug).
	out   io.Writer
	log   *slog.Logger
	level *slog.LevelVar
	cfg   liveConfig
	// sleep waits d or until ctx ends (false).
	sleep func(ctx context.Context, d time.Duration) bool
	// runAgent is agent.Run.
	runAgent func(context.Context, agent.Options) (protocol.Report, error)
	// hold returns the agent's hold hook for the appliance at serverURL,
	// announcing on the console through holding.
	hold    func(serverURL string, holding func(addr, hostKey string)) func(context.Context, agent.HoldRequest) error
	version string
}

func (l *live) printf(format string, args ...any) {
	fmt.Fprintf(l.out, "kiln-agent: "+format+"\n", args...)
}

// run brings the live image up and runs the agent; it returns what to do
// next (protocol.AfterPoweroff, AfterReboot or AfterStay) and how long to
// wait before.
func (l *live) run(ctx context.Context) (string, time.Duration) {
	for _, err := range l.sys.Mount() {
		l.printf("warning: %v", err)
	}
	l.printf("live image up (agent %s)", l.version)
	cmdline := l.sys.Cmdline()
	c := agent.ParseCmdline(cmdline)
	for _, p := range liveParams(cmdline, &l.cfg) {
		l.printf("warning: kernel command line: %s", p)
	}
	if l.cfg.Debug && l.level != nil {
		l.level.Set(slog.LevelDebug)
	}

	mods, err := l.sys.Drivers(ctx)
	slices.Sort(mods)
	l.printf("loaded %d modules: %s", len(mods), strings.Join(mods, " "))
	if err != nil {
		l.printf("warning: loading drivers: %v (devices without a driver are left out of the inventory)", err)
	}

	if !l.sys.RandomReady() {
		l.printf("the kernel's random number generator is not seeded yet (no RDRAND or hardware RNG?): DHCP and the SSH hold wait for it")
	}
	hostname := c.Host
	if hostname == "" {
		hostname = "kiln-vet"
	}
	go l.sys.Network(ctx, hostname)
	l.waitNetwork(ctx)

	var assigned *protocol.Assignment
	verdictShown := false
	showVerdict := func(r protocol.Report) {
		if verdictShown || r.RunID == "" {
			return
		}
		verdictShown = true
		l.printf("run %s verdict %s", r.RunID, r.Verdict)
		for _, f := range r.Findings {
			l.printf("finding: %s %s: %s", f.Status, f.Source, f.Message)
		}
	}
	o := agent.Options{ServerURL: c.Server, Token: c.Token, Host: c.Host, MAC: c.MAC, Profile: c.Profile,
		Logger: l.log, Version: l.version, HelloTimeout: l.cfg.HelloTimeout,
		Assigned: func(a protocol.Assignment) { assigned = &a }}
	if c.Server != "" {
		hold := l.hold(c.Server, func(addr, hostKey string) {
			l.printf("holding: %s", sshCommand(addr))
			l.printf("host key: %s", hostKey)
		})
		// The verdict goes on the console before the hold, which may last
		// hours.
		o.Hold = func(ctx context.Context, req agent.HoldRequest) error {
			showVerdict(req.Report)
			return hold(ctx, req)
		}
		l.printf("reporting to %s as %q", c.Server, c.Host)
	}
	report, err := l.runAgent(ctx, o)
	showVerdict(report)
	after := protocol.AfterPoweroff
	if assigned != nil && assigned.After != "" {
		after = assigned.After
	}
	switch {
	case err == nil:
		return l.checkAfter(after), l.cfg.AfterDelay
	case errors.Is(err, agent.ErrOptions):
		l.printf("cannot start: %v. This image is booted by the appliance's vetting boot script: start a vetting run for this host on the appliance and network-boot it", err)
	case errors.Is(err, protocol.ErrRefused):
		l.printf("the appliance refused this run's token (%v): the run expired or was deleted; start a new run on the appliance", err)
	case errors.Is(err, protocol.ErrGone):
		l.printf("the run was stopped on the appliance")
		return l.checkAfter(after), l.cfg.AfterDelay
	case assigned == nil:
		l.printf("cannot reach the appliance at %s: %v. Check the cable and switch port, that this NIC got a lease from the appliance, and that kiln.server= is the appliance's address", c.Server, err)
	case report.RunID != "":
		l.printf("the run ended with an error: %v", err)
		return l.checkAfter(after), l.cfg.FailDelay
	default:
		l.printf("the run failed before its report: %v. The appliance shows the run's events; start a new run once the cause is fixed", err)
	}
	return protocol.AfterPoweroff, l.cfg.FailDelay
}

// checkAfter falls back to poweroff for an After this image does not know.
func (l *live) checkAfter(after string) string {
	switch after {
	case protocol.AfterPoweroff, protocol.AfterReboot, protocol.AfterStay:
		return after
	}
	l.printf("warning: the appliance asked for %q after the run, which this image does not know (poweroff, reboot, stay); powering off", after)
	return protocol.AfterPoweroff
}

// waitNetwork waits until a NIC has an address, printing progress, for at
// most NetWait (the agent's hello retries after that anyway).
func (l *live) waitNetwork(ctx context.Context) {
	var waited, lastProgress time.Duration
	announced := false
	for {
		if addrs := l.sys.Addrs(); len(addrs) > 0 {
			names := make([]string, 0, len(addrs))
			for n := range addrs {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				l.printf("network up on %s %s", n, strings.Join(addrs[n], " "))
			}
			return
		}
		nics := l.sys.NICs()
		switch {
		case len(nics) == 0 && waited >= l.cfg.NoNICWait:
			l.printf("no wired NIC found: the appliance cannot be reached. Is the NIC's driver in the live image (lsmod on the appliance's vet image, see docs/image.md)?")
			return
		case waited >= l.cfg.NetWait:
			l.printf("no DHCP lease after %s on %s: check the cable and that the appliance serves DHCP on this network; still trying", waited, strings.Join(nics, " "))
			return
		case len(nics) > 0 && (!announced || waited-lastProgress >= l.cfg.Progress):
			announced, lastProgress = true, waited
			l.printf("waiting for a DHCP lease on %s (%s)", strings.Join(nics, " "), waited)
		}
		if !l.sleep(ctx, l.cfg.Poll) {
			return
		}
		waited += l.cfg.Poll
	}
}

// finish does after: it stays up, or halts after delay. It returns only
// when halting failed.
func (l *live) finish(ctx context.Context, after string, delay time.Duration) error {
	if after == protocol.AfterStay {
		l.printf("staying up as the appliance asked; power the machine off by hand when done")
		<-ctx.Done()
		return ctx.Err()
	}
	l.printf("%s in %s", after, delay)
	l.sleep(ctx, delay)
	l.printf("reached %s", after)
	return l.sys.Halt(after)
}

// sshCommand is the command an operator types to reach addr as root.
func sshCommand(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "ssh root@" + addr
	}
	if port == "22" {
		return "ssh root@" + host
	}
	return "ssh -p " + port + " root@" + host
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
