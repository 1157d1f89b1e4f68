package appliance

import (
	"context"
	"fmt"
	"io"
	"time"

	"kiln.dev/kiln/image/flash"
	"kiln.dev/kiln/init/console"
	"kiln.dev/kiln/init/pid1"
	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/partitions"
)

// PID1 connects PID 1 (init/pid1) to the appliance: the supervisor over
// the service catalog, the recovery consoles, and the OTA hooks that
// prepare a boot and commit or roll back a new version.
type PID1 struct {
	out     io.Writer
	version string
	// sup is set by newSupervisor, which pid1 calls before it starts the
	// consoles (so console reads it after the write); nil without services.
	sup *supervisor.Supervisor
	// ota is this boot's OTA state (ota.go).
	ota otaBoot
}

// NewPID1 wires PID 1 for this appliance; out is the console, version is
// shown in the recovery menu.
func NewPID1(out io.Writer, version string) *PID1 { return &PID1{out: out, version: version} }

// Options are pid1's options with this wiring's hooks.
func (w *PID1) Options() pid1.Options {
	return pid1.Options{
		Out:           w.out,
		NewSupervisor: w.newSupervisor,
		Console:       w.console,
		AfterStart:    w.otaAfterStart, // OTA: commit or roll back a new version
	}
}

// newSupervisor builds the supervisor over the service catalog once PID 1
// has the config and /data.
func (w *PID1) newSupervisor(b *pid1.Boot) (pid1.Supervisor, error) {
	w.otaPrepare(b) // before any service opens the database
	specs, err := Specs(b.Config, b.ConfigPath, b.StateDir, b.RunDir)
	if err != nil {
		return nil, err
	}
	// A bad hosts file is reported; the services start with the database as it is.
	log := b.Log.With("component", "init")
	if res, err := ImportHostsFile(context.Background(), b.Config, b.StateDir); err != nil {
		fmt.Fprintf(w.out, "kiln-init: PROBLEM: %v\n", err)
	} else if res != nil {
		log.Info("imported provisioning.hosts_file", "file", b.Config.Provisioning.HostsFile, "created", res.Created, "updated", res.Updated)
	}
	AnnounceFirstLogin(w.out, b.Config, b.StateDir, b.Log.With("component", "init"))
	s, err := supervisor.New(specs, supervisor.Options{
		RunDir:                  b.RunDir,
		LogDir:                  b.LogDir,
		Console:                 w.out, // gets "kiln: ready"
		Logger:                  b.Log, // the supervisor adds its component
		Reaper:                  b.Reaper,
		UnhealthyAfterCrashLoop: 10 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	w.sup = s
	return s, nil
}

// console runs the recovery console on one terminal.
func (w *PID1) console(ctx context.Context, tty string, b *pid1.Boot) error {
	t, err := console.OpenTTY(tty)
	if err != nil {
		return err
	}
	defer t.Close()
	c := &console.Console{
		Hostname:   b.Config.Hostname,
		Slot:       partitions.Slot(b.Slot),
		Live:       b.Live,
		Version:    w.version,
		Management: b.Config.Management,
		Net:        console.NetInterfaces{},
		Data:       b.Control,
		Shell:      console.ExecShell{Starter: b.Reaper}, // PID 1's children go through the reaper
		Power:      b.Control,
		Login:      consoleLogin{cfg: b.Config, stateDir: b.StateDir},
		Logger:     b.Log.With("tty", tty),
	}
	if w.sup != nil {
		c.Services = consoleStatus{w.sup}
	}
	if sl := w.otaSlots(b); sl != nil {
		c.Slots = sl
	}
	if b.LiveID != "" {
		c.Install = liveInstaller{liveID: b.LiveID, sys: flash.Host()}
	}
	return c.Run(ctx, t)
}

// consoleStatus shows the supervisor to the recovery console.
type consoleStatus struct{ s *supervisor.Supervisor }

func (c consoleStatus) Status(context.Context) (console.Status, error) {
	st := c.s.Status()
	out := console.Status{Ready: st.Ready}
	for _, v := range st.Services {
		out.Services = append(out.Services, console.Service{
			Name:     v.Name,
			State:    string(v.State),
			Ready:    v.State == supervisor.StateReady,
			PID:      v.PID,
			Restarts: v.Restarts,
			Since:    v.Since,
			LastExit: v.LastExit,
		})
	}
	return out, nil
}

func (c consoleStatus) Logs(ctx context.Context, service string, n int, follow bool, w io.Writer) error {
	return c.s.WriteLogs(ctx, service, n, follow, w)
}
