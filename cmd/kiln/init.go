package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"kiln.dev/kiln/image/flash"
	"kiln.dev/kiln/init/console"
	"kiln.dev/kiln/init/pid1"
	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/partitions"
)

// runInit is PID 1 inside the appliance (reached as /sbin/init). Run by an
// operator instead, "kiln init reboot|poweroff" (or sysvinit's "init 6|0")
// asks the running PID 1 for an orderly shutdown.
func runInit(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(s.err)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("init: %v: %w", err, errUsage)
	}
	if os.Getpid() != 1 {
		return signalInit(fs.Arg(0))
	}
	// The kernel passes its unknown parameters as arguments; ignore them.
	w := &initWiring{out: s.out}
	p := pid1.New(pid1.Options{
		Out:           s.out,
		NewSupervisor: w.newSupervisor,
		Console:       w.console,
		AfterStart:    w.otaAfterStart, // OTA: commit or roll back a new version
	})
	// SIGTERM and SIGINT mean "reboot" to PID 1, not "cancel": Run handles them.
	return p.Run(context.WithoutCancel(ctx))
}

// signalInit sends PID 1 the signal for a shutdown request.
func signalInit(what string) error {
	var sig syscall.Signal
	switch what {
	case "reboot", "6":
		sig = syscall.SIGTERM
	case "poweroff", "0":
		sig = syscall.SIGUSR2
	default:
		return fmt.Errorf("init: not PID 1; use \"kiln init reboot\" or \"kiln init poweroff\": %w", errUsage)
	}
	if err := syscall.Kill(1, sig); err != nil {
		return fmt.Errorf("init: asking PID 1 to %s: %w", what, err)
	}
	return nil
}

// initWiring connects PID 1 to the concrete supervisor and recovery console.
type initWiring struct {
	out io.Writer
	// sup is set by newSupervisor, which pid1 calls before it starts the
	// consoles (so console reads it after the write); nil without services.
	sup *supervisor.Supervisor
	// ota is this boot's OTA state (update.go).
	ota otaBoot
}

// newSupervisor builds the supervisor over the service catalog once PID 1
// has the config and /data.
func (w *initWiring) newSupervisor(b *pid1.Boot) (pid1.Supervisor, error) {
	w.otaPrepare(b) // before any service opens the database
	specs, err := serviceSpecs(b.Config, b.ConfigPath, b.StateDir, b.RunDir)
	if err != nil {
		return nil, err
	}
	// A bad hosts file is reported; the services start with the database as it is.
	log := b.Log.With("component", "init")
	if res, err := importHostsFile(context.Background(), b.Config, b.StateDir); err != nil {
		fmt.Fprintf(w.out, "kiln-init: PROBLEM: %v\n", err)
	} else if res != nil {
		log.Info("imported provisioning.hosts_file", "file", b.Config.Provisioning.HostsFile, "created", res.Created, "updated", res.Updated)
	}
	announceFirstLogin(w.out, b.Config, b.StateDir, b.Log.With("component", "init"))
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
func (w *initWiring) console(ctx context.Context, tty string, b *pid1.Boot) error {
	t, err := console.OpenTTY(tty)
	if err != nil {
		return err
	}
	defer t.Close()
	c := &console.Console{
		Hostname:   b.Config.Hostname,
		Slot:       partitions.Slot(b.Slot),
		Live:       b.Live,
		Version:    version,
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
