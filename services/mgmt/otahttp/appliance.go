package otahttp

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/system"
)

// ForAppliance returns the handler of the running appliance (the management
// service calls it with its state and run dirs and update.tries). Outside a
// kiln image, or without the ESP or the keys, the routes answer 503 saying why.
func ForAppliance(stateDir, runDir string, tries int, log *slog.Logger) *Handler {
	h := &Handler{Log: log}
	sys, err := system.Detect(system.Paths{StateDir: stateDir, RunDir: runDir})
	if err != nil {
		h.Unavailable = err
		return h
	}
	h.Slots = sys.Controller(log)
	if sys.ESP == nil {
		h.Unavailable = fmt.Errorf("the ESP is not mounted at %s, so boot entries cannot be changed: see the boot problems in the recovery console", system.ESPMount)
		h.Slots = nil
		return h
	}
	if sys.KeysErr != nil {
		// Status works; installs are refused with the reason.
		h.Installer = refuse{fmt.Errorf("updates cannot be verified: %w", sys.KeysErr)}
	} else {
		h.Installer = sys.Installer(tries, log)
	}
	h.Reboot = system.RebootViaInit
	return h
}

// refuse is an Installer that always fails with err.
type refuse struct{ err error }

func (r refuse) Install(context.Context, io.Reader, install.Request) (install.Result, error) {
	return install.Result{}, r.err
}
