// Command kiln-agent is the hardware vetting agent of kiln's live image: it
// inventories the machine, runs the burn-in stages its run asks for and
// reports to the appliance (see kiln.dev/kiln/services/vetting). Its
// settings come from the kernel command line (kiln.server, kiln.token,
// kiln.host, kiln.mac, kiln.profile) unless flags give them.
//
// It prints "kiln-agent: run <id> verdict <STATUS>" on success, one
// "kiln-agent: finding: …" line per reason, and exits 0 when a report was
// sent (whatever the verdict), 1 when none could be, 2 on bad usage.
//
// As PID 1 (the /init of the vetting live image, see live.go) it brings the
// machine up first and powers it off, reboots or stays up afterwards; run
// as modprobe (the image's /sbin/modprobe link) it answers the kernel's
// module requests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/services/vetting/agent"
)

// version is set at link time (-X main.version=…).
var version = "dev"

var errUsage = errors.New("usage")

func main() {
	if filepath.Base(os.Args[0]) == "modprobe" {
		if err := kmod.Modprobe(os.Args[1:], "", os.Stdout, os.Stderr); err != nil {
			if !errors.Is(err, kmod.ErrNotFound) {
				fmt.Fprintln(os.Stderr, err)
			}
			os.Exit(1)
		}
		return
	}
	if os.Getpid() == 1 {
		liveMain(version)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "kiln-agent:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "kiln-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "appliance URL (default: kiln.server= of the kernel command line)")
	token := fs.String("token", "", "the run's bearer token (default: kiln.token=)")
	host := fs.String("host", "", "host name to report (default: kiln.host=)")
	mac := fs.String("mac", "", "boot MAC to report (default: kiln.mac=)")
	profile := fs.String("profile", "", "override the run's profile: quick, standard or extended (default: kiln.profile= or the run's)")
	root := fs.String("root", "/", "root of the machine's /sys, /proc and /dev")
	cmdline := fs.String("cmdline", "/proc/cmdline", "kernel command line to read kiln.* parameters from")
	helloTimeout := fs.Duration("hello-timeout", 10*time.Minute, "how long to keep trying to reach the appliance")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	var c agent.Cmdline
	if b, err := os.ReadFile(*cmdline); err == nil {
		c = agent.ParseCmdline(string(b))
	}
	pick := func(flagValue, fromCmdline string) string {
		if flagValue != "" {
			return flagValue
		}
		return fromCmdline
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "vetting-agent")
	opts := agent.Options{
		ServerURL: pick(*server, c.Server), Token: pick(*token, c.Token),
		Host: pick(*host, c.Host), MAC: pick(*mac, c.MAC), Profile: pick(*profile, c.Profile),
		Root: *root, Logger: log, Version: version, HelloTimeout: *helloTimeout,
	}
	report, err := agent.Run(ctx, opts)
	if errors.Is(err, agent.ErrOptions) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if report.RunID != "" {
		fmt.Fprintf(stdout, "kiln-agent: run %s verdict %s\n", report.RunID, report.Verdict)
		for _, f := range report.Findings {
			fmt.Fprintf(stdout, "kiln-agent: finding: %s %s: %s\n", f.Status, f.Source, f.Message)
		}
	}
	return err
}
