package appliance

import (
	"fmt"
	"io"
	"log/slog"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/mgmt"
)

// AnnounceFirstLogin makes what an operator needs for the first login before
// any service starts — the initial admin password and the management
// certificate — and prints them on the console: the password once, when it
// is made ("kiln: admin password: …"), the fingerprint on every start.
// Problems are logged, never fatal: mgmt makes both itself too.
func AnnounceFirstLogin(console io.Writer, cfg config.Config, stateDir string, log *slog.Logger) {
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
