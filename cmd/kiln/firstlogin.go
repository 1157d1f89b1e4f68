package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/mgmt"
)

// announceFirstLogin makes what an operator needs for the first login before
// any service starts — the initial admin password and the management
// certificate — and prints them on the console: the password once, when it
// is made ("kiln: admin password: …"), the fingerprint on every start.
// Problems are logged, never fatal: mgmt makes both itself too.
func announceFirstLogin(console io.Writer, cfg config.Config, stateDir string, log *slog.Logger) {
	pw, created, err := api.EnsureInitialPassword(stateDir)
	switch {
	case err != nil:
		log.Warn("making the initial admin password", "err", err)
	case created:
		fmt.Fprintf(console, "kiln: admin password: %s (user admin; also in %s until you change it)\n", pw, api.InitialPasswordPath(stateDir))
	}
	if cfg.Management.HTTPSPort == 0 {
		return
	}
	fp, _, err := mgmt.EnsureCertificate(cfg, stateDir)
	if err != nil {
		log.Warn("preparing the management certificate", "err", err)
		return
	}
	fmt.Fprintf(console, "kiln: management certificate sha256 %s\n", fp)
}

// consoleLogin shows the recovery console the first-login details.
type consoleLogin struct {
	cfg      config.Config
	stateDir string
}

func (c consoleLogin) AdminPassword() (string, error) { return api.ReadInitialPassword(c.stateDir) }

func (c consoleLogin) Fingerprint() (string, error) {
	if c.cfg.Management.HTTPSPort == 0 {
		return "", nil
	}
	fp, _, err := mgmt.EnsureCertificate(c.cfg, c.stateDir)
	return fp, err
}

// runPassword manages the admin password from the appliance itself (the
// recovery console's shell): "kiln password show|reset [--state DIR]".
func runPassword(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "reset") {
		fmt.Fprintln(s.err, "usage: kiln password show|reset [--state DIR]")
		return fmt.Errorf("password: want show or reset: %w", errUsage)
	}
	fs := flag.NewFlagSet("password "+args[0], flag.ContinueOnError)
	fs.SetOutput(s.err)
	state := fs.String("state", "/data/state", "state directory (kiln serve: its --state)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("password: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("password: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if _, err := os.Stat(*state); err != nil {
		return fmt.Errorf("password: state directory: %w (pass --state)", err)
	}
	if args[0] == "show" {
		pw, err := api.ReadInitialPassword(*state)
		if err != nil {
			return fmt.Errorf("password: %w", err)
		}
		if pw == "" {
			return fmt.Errorf("password: the admin password was changed from the first-boot one; \"kiln password reset\" makes a new one: %w", apiclient.ErrNotFound)
		}
		fmt.Fprintf(s.out, "user admin, password %s\n", pw)
		return nil
	}
	pw, err := api.RequestPasswordReset(*state)
	if err != nil {
		return fmt.Errorf("password reset: %w", err)
	}
	fmt.Fprintf(s.out, "new admin password: %s\n(the API applies it at the next login; the account admin becomes an enabled admin and its sessions end)\n", pw)
	return nil
}
