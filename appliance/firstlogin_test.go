package appliance

import (
	"log/slog"
	"strings"
	"testing"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
)

func TestAnnounceFirstLogin(t *testing.T) {
	state := t.TempDir()
	cfg := config.Default()
	var out strings.Builder
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	AnnounceFirstLogin(&out, cfg, state, log)
	pw, _ := api.ReadInitialPassword(state)
	if !strings.Contains(out.String(), "kiln: admin password: "+pw+" ") || !strings.Contains(out.String(), "kiln: management certificate sha256 ") {
		t.Errorf("first start printed %q", out.String())
	}
	out.Reset()
	AnnounceFirstLogin(&out, cfg, state, log)
	if strings.Contains(out.String(), "admin password") || !strings.Contains(out.String(), "sha256") {
		t.Errorf("second start printed %q, want only the fingerprint", out.String())
	}
	l := consoleLogin{cfg: cfg, stateDir: state}
	if got, err := l.AdminPassword(); got != pw || err != nil {
		t.Errorf("consoleLogin.AdminPassword() = %q, %v", got, err)
	}
	if fp, err := l.Fingerprint(); len(fp) != 95 || err != nil {
		t.Errorf("consoleLogin.Fingerprint() = %q, %v", fp, err)
	}
}
