package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/init/console"
	"kiln.dev/kiln/init/pid1"
	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/ota/commit"
	"kiln.dev/kiln/ota/rootscan"
	"kiln.dev/kiln/ota/system"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// otaBoot is PID 1's OTA state for this boot (see package ota/commit):
// prepared once, before the services start (or when the console needs the
// slots), then the health check of a trial boot runs after they started.
type otaBoot struct {
	once sync.Once
	// Set by prepare; read after once.Do.
	sys  *system.System
	opts commit.Options
	boot commit.Boot
	err  error
}

// otaPrepare tidies the boot entries, records a fallback and keeps the
// database usable across versions (snapshot or restore) before any
// service opens it.
func (w *PID1) otaPrepare(b *pid1.Boot) {
	w.ota.once.Do(func() {
		sys, err := system.Detect(system.Paths{StateDir: b.StateDir, RunDir: b.RunDir})
		if err != nil {
			w.ota.err = err
			return
		}
		w.ota.sys = sys
		o := commit.Options{Running: sys.Slot, Deadline: b.Config.Update.Deadline(), LockPath: sys.LockPath, Log: b.Log}
		if sys.ESP != nil {
			o.ESP = sys.ESP
		}
		if b.DataErr == nil {
			o.State = sys.State
			o.Data = commit.Data{StateDir: b.StateDir,
				Files: []string{store.FileName, store.FileName + "-wal"}, Drop: []string{store.FileName + "-shm"}}
		}
		w.ota.opts = o
		w.ota.boot, w.ota.err = commit.Prepare(o)
		if w.ota.err != nil {
			fmt.Fprintf(w.out, "kiln-init: PROBLEM: %v\n", w.ota.err)
			return
		}
		bt := w.ota.boot
		for _, p := range bt.Problems {
			fmt.Fprintf(w.out, "kiln-init: PROBLEM: %s\n", p)
		}
		if f := bt.FellBack; f != nil {
			fmt.Fprintf(w.out, "kiln-ota: generation %d (version %s) %s\n", f.Generation, f.Version, f.Reason)
		}
		if bt.Data != "" {
			fmt.Fprintf(w.out, "kiln-ota: %s\n", bt.Data)
		}
	})
}

// otaSlots returns the recovery console's slot controller (nil outside an
// appliance or without the ESP).
func (w *PID1) otaSlots(b *pid1.Boot) console.SlotController {
	w.otaPrepare(b)
	if w.ota.sys == nil || w.ota.opts.ESP == nil {
		return nil
	}
	c := w.ota.sys.Controller(b.Log)
	c.State = w.ota.opts.State
	return c
}

// otaAfterStart runs the health checks of a trial boot (a new version's
// first boots): pass → the entry is blessed; fail → marked bad and PID 1
// reboots into the previous generation.
func (w *PID1) otaAfterStart(ctx context.Context, b *pid1.Boot) {
	w.otaPrepare(b)
	if w.ota.err != nil || !w.ota.boot.Trial {
		return
	}
	o := w.ota.opts
	o.Checks = append(w.healthChecks(b), w.rootCheck(ctx))
	e := w.ota.boot.Entry
	fmt.Fprintf(w.out, "kiln-ota: trial boot of generation %d (version %s, try %d): health checks within %s\n",
		e.Generation, e.Version, e.Counter.Done, o.Deadline)
	res, err := commit.Commit(ctx, o, e)
	switch {
	case ctx.Err() != nil:
		return // shutting down: the next boot decides
	case res.Committed:
		fmt.Fprintf(w.out, "kiln-ota: committed generation %d (version %s)\n", e.Generation, e.Version)
		return
	case err != nil:
		fmt.Fprintf(w.out, "kiln-init: PROBLEM: %v\n", err)
		if res.Reason == "" {
			return
		}
	}
	fmt.Fprintf(w.out, "kiln-ota: generation %d (version %s) failed: %s; rebooting into the previous generation\n", e.Generation, e.Version, res.Reason)
	if err := b.Control.Reboot(ctx); err != nil {
		fmt.Fprintf(w.out, "kiln-init: PROBLEM: rebooting: %v\n", err)
	}
}

// rootCheck reads the whole verified root in the background: a trial boot
// commits only once dm-verity has checked every block of the new slot.
func (w *PID1) rootCheck(ctx context.Context) commit.Check {
	fail := func(err error) commit.Check {
		return commit.Check{Name: "root", Run: func(context.Context) error { return err }}
	}
	node, err := rootscan.FindDevice("/sys/class/block", "/dev", verity.DeviceName)
	if err != nil {
		return fail(err)
	}
	f, err := os.Open(node)
	if err != nil {
		return fail(fmt.Errorf("opening the verified root: %w", err))
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fail(fmt.Errorf("sizing the verified root %s: %w", node, err))
	}
	start := time.Now()
	scan := rootscan.Start(ctx, f, size, node)
	go func() {
		err := scan.Wait()
		f.Close()
		if err == nil {
			fmt.Fprintf(w.out, "kiln-ota: root verified: %d bytes of %s read through dm-verity in %s\n", size, node, time.Since(start).Round(10*time.Millisecond))
		}
	}()
	return commit.Check{Name: "root", Run: func(ctx context.Context) error {
		err := scan.Check(ctx)
		if errors.Is(err, rootscan.ErrCorrupt) {
			return fmt.Errorf("%w: %w", commit.ErrFinal, err)
		}
		return err
	}}
}

// healthChecks are what commits a new version: every enabled service
// ready, the data partition writable, the management API answering.
func (w *PID1) healthChecks(b *pid1.Boot) []commit.Check {
	return []commit.Check{
		{Name: "services", Run: func(context.Context) error {
			if w.sup == nil {
				return errors.New("the services did not start")
			}
			st := w.sup.Status()
			if st.Ready {
				return nil
			}
			var waiting []string
			for _, s := range st.Services {
				if s.Enabled && s.State != supervisor.StateReady {
					waiting = append(waiting, fmt.Sprintf("%s %s", s.Name, s.State))
				}
			}
			return fmt.Errorf("not ready: %s", strings.Join(waiting, ", "))
		}},
		{Name: "data", Run: func(context.Context) error {
			if b.DataErr != nil {
				return fmt.Errorf("the data partition is not mounted: %v", b.DataErr)
			}
			return probeWritable(filepath.Join(b.StateDir, "ota"))
		}},
		{Name: "api", Run: func(ctx context.Context) error { return probeAPI(ctx, b.Config.Management) }},
	}
}

// probeWritable writes, syncs, reads back and removes a file in dir.
func probeWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := filepath.Join(dir, ".health-probe")
	want := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	if err := atomicfile.WriteFile(p, want, 0o644); err != nil {
		return err
	}
	defer os.Remove(p)
	got, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("%s reads back different bytes", p)
	}
	return nil
}

// probeAPI asks the management service's /healthz on this machine.
func probeAPI(ctx context.Context, m config.Management) error {
	host := "127.0.0.1"
	if ip := net.ParseIP(m.Listen); ip != nil && !ip.IsUnspecified() {
		host = ip.String()
	} else if m.Listen != "" && ip == nil {
		host = m.Listen
	}
	var u string
	switch {
	case m.HTTPPort != 0:
		u = "http://" + net.JoinHostPort(host, strconv.Itoa(m.HTTPPort)) + "/healthz"
	case m.HTTPSPort != 0:
		u = "https://" + net.JoinHostPort(host, strconv.Itoa(m.HTTPSPort)) + "/healthz"
	default:
		return nil // no management endpoint configured: nothing to ask
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // our own self-signed certificate
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
