package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/image"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/init/console"
	"kiln.dev/kiln/init/pid1"
	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/commit"
	"kiln.dev/kiln/ota/pull"
	"kiln.dev/kiln/ota/rootscan"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/ota/system"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/mgmt/otahttp"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

const updateUsage = `usage: kiln update build --payloads DIR --key K --version V --generation N [--out F]
                        make a signed bundle of the payloads of kiln image build --payloads DIR
       kiln update verify BUNDLE --keys DIR|--pub FILE   check a bundle as an appliance would
       kiln update push BUNDLE [--to URL] [--tries N] [--reboot] [--retry-failed]
                        upload a bundle into the appliance's inactive slot (after kiln login)
       kiln update status [--url URL] [--json]           both slots (on the appliance: no --url)
       kiln update rollback a|b [--url URL] [--reboot]   make the other slot boot next`

// runUpdate builds, checks and installs over-the-air update bundles.
func runUpdate(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		fmt.Fprintln(s.err, updateUsage)
		return fmt.Errorf("update: no subcommand: %w", errUsage)
	}
	switch args[0] {
	case "build":
		return runUpdateBuild(args[1:], s)
	case "verify":
		return runUpdateVerify(args[1:], s)
	case "push":
		return runUpdatePush(ctx, args[1:], s)
	case "status":
		return runUpdateStatus(ctx, args[1:], s)
	case "rollback":
		return runUpdateRollback(ctx, args[1:], s)
	case "-h", "--help", "help":
		fmt.Fprintln(s.out, updateUsage)
		return nil
	}
	fmt.Fprintln(s.err, updateUsage)
	return fmt.Errorf("update: unknown subcommand %q: %w", args[0], errUsage)
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("push BUNDLE --to URL").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runUpdateBuild(args []string, s stdio) error {
	fs := flag.NewFlagSet("update build", flag.ContinueOnError)
	fs.SetOutput(s.err)
	payloads := fs.String("payloads", "", "directory written by kiln image build --payloads (vmlinuz, initrd, root.squashfs)")
	kernel := fs.String("kernel", "", "kernel payload (overrides DIR/vmlinuz)")
	initrd := fs.String("initrd", "", "initrd payload (overrides DIR/initrd)")
	root := fs.String("root", "", "root payload: squashfs then its verity tree (overrides DIR/root.squashfs)")
	rootVerity := fs.String("root-verity", "", "the root payload's kiln.verity value (overrides the contents of DIR/root.verity)")
	keyPath := fs.String("key", "", "signing key (kiln keys gen)")
	version := fs.String("version", "", "release string shown in the boot menu and status")
	generation := fs.Int("generation", 0, "OTA generation: must be above every appliance's running generation")
	compatible := fs.String("compatible", bundle.Compatible(), "the kind of appliance the bundle is for")
	out := fs.String("out", "", "bundle file to write (default kiln-<version>.bundle)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("update build: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("update build: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	files := bundle.Files{Kernel: *kernel, Initrd: *initrd, Root: *root}
	for _, f := range []struct {
		p    *string
		name string
	}{{&files.Kernel, image.PayloadKernel}, {&files.Initrd, image.PayloadInitrd}, {&files.Root, image.PayloadRoot}} {
		if *f.p == "" && *payloads != "" {
			*f.p = filepath.Join(*payloads, f.name)
		}
		if *f.p == "" {
			return fmt.Errorf("update build: no %s: pass --payloads DIR (from kiln image build --payloads DIR): %w", f.name, errUsage)
		}
	}
	if *rootVerity == "" && *payloads != "" {
		b, err := os.ReadFile(filepath.Join(*payloads, image.PayloadRootVerity))
		if err != nil {
			return fmt.Errorf("update build: %w (kiln image build --payloads writes it next to root.squashfs)", err)
		}
		*rootVerity = strings.TrimSpace(string(b))
	}
	if *rootVerity == "" {
		return fmt.Errorf("update build: no root verity: pass --payloads DIR (from kiln image build --payloads DIR) or --root-verity: %w", errUsage)
	}
	if err := checkRootVerity(files.Root, *rootVerity); err != nil {
		return fmt.Errorf("update build: %w", err)
	}
	files.RootVerity = *rootVerity
	var problems []string
	if *keyPath == "" {
		problems = append(problems, "--key: the signing key is required (make one with kiln keys gen)")
	}
	if *version == "" {
		problems = append(problems, "--version: required (the release string)")
	}
	if *generation < 1 || *generation > bundle.MaxGeneration {
		problems = append(problems, fmt.Sprintf("--generation %d: must be 1 to %d and above the running generation of the appliances", *generation, bundle.MaxGeneration))
	}
	if len(problems) > 0 {
		return fmt.Errorf("update build:\n  %s: %w", strings.Join(problems, "\n  "), errUsage)
	}
	priv, err := bundle.ReadPrivateKeyFile(*keyPath)
	if err != nil {
		return fmt.Errorf("update build: %w", err)
	}
	m, err := bundle.NewManifest(*compatible, *version, *generation, files)
	if err != nil {
		return fmt.Errorf("update build: %w", err)
	}
	if *out == "" {
		*out = "kiln-" + *version + ".bundle"
	}
	err = atomicfile.Write(*out, 0o666, func(f *os.File) error { return bundle.WriteFiles(f, m, priv, files) })
	if err != nil {
		return fmt.Errorf("update build: %w", err)
	}
	sum, size, err := image.HashFile(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "%s  %s  (%d bytes; version %s, generation %d, %s, key %s)\n",
		sum, *out, size, m.Version, m.Generation, m.Compatible, bundle.KeyID(priv.Public().(ed25519.PublicKey)))
	return nil
}

func runUpdateVerify(args []string, s stdio) error {
	fs := flag.NewFlagSet("update verify", flag.ContinueOnError)
	fs.SetOutput(s.err)
	keysDir := fs.String("keys", "", "directory of trusted *.pub keys (an image's /etc/kiln/ota-keys)")
	pub := fs.String("pub", "", "one trusted public key file")
	compatible := fs.String("compatible", bundle.Compatible(), "the appliance's compatible string")
	minGen := fs.Int("min-generation", 0, "refuse generations below this (the running generation + 1)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return fmt.Errorf("update verify: %v: %w", err, errUsage)
	}
	if len(pos) != 1 || (*keysDir == "") == (*pub == "") {
		return fmt.Errorf("update verify: want one BUNDLE and --keys DIR or --pub FILE: %w", errUsage)
	}
	var keys []bundle.PublicKey
	if *keysDir != "" {
		if keys, err = bundle.ReadKeyDir(*keysDir); err != nil {
			return fmt.Errorf("update verify: %w", err)
		}
	} else {
		k, err := bundle.ReadPublicKeyFile(*pub)
		if err != nil {
			return fmt.Errorf("update verify: %w", err)
		}
		keys = []bundle.PublicKey{k}
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("update verify: %w", err)
	}
	defer f.Close()
	br, err := bundle.NewReader(f, bundle.Options{Keys: keys, Compatible: *compatible, MinGeneration: *minGen})
	if err != nil {
		return fmt.Errorf("update verify: %s: %w", pos[0], err)
	}
	for {
		p, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("update verify: %s: %w", pos[0], err)
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return fmt.Errorf("update verify: %s: %w", pos[0], err)
		}
		fmt.Fprintf(s.out, "  %-14s %10d bytes  sha256 %s ok\n", p.Name, p.Size, p.SHA256)
	}
	m := br.Manifest
	fmt.Fprintf(s.out, "%s: version %s, generation %d, %s, signed by key %s: ok\n", pos[0], m.Version, m.Generation, m.Compatible, br.KeyID)
	return nil
}

func runUpdatePush(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("update push", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	fs.StringVar(&o.URL, "to", "", "the appliance, https://host[:port] (same as --url)")
	tries := fs.Int("tries", 0, "boot tries of the new slot before falling back (default: the appliance's update.tries)")
	reboot := fs.Bool("reboot", false, "reboot into the new version once it is installed")
	retry := fs.Bool("retry-failed", false, "install even if this generation failed on the appliance before")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return fmt.Errorf("update push: %v: %w", err, errUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("update push: want one BUNDLE file: %w", errUsage)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("update push: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("update push: %w", err)
	}
	q := url.Values{}
	if *tries != 0 {
		q.Set("tries", strconv.Itoa(*tries))
	}
	if *reboot {
		q.Set("reboot", "1")
	}
	if *retry {
		q.Set("retry_failed", "1")
	}
	path := "/api/v1/update/bundle"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	pr := &progressReader{r: f, total: st.Size(), w: s.err, name: filepath.Base(pos[0]), every: 10}
	resp, err := c.Send(ctx, "POST", path, pr, "application/x-tar", nil)
	if err != nil {
		return fmt.Errorf("update push: %w", err)
	}
	defer resp.Body.Close()
	var res otahttp.PushResponse
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("update push: reading the answer: %w", err)
	}
	fmt.Fprintf(s.out, "installed version %s (generation %d) into slot %s: entry %s, %d tries, %s\n",
		res.Version, res.Generation, res.Slot, res.Entry, res.Tries, res.Took.Round(time.Millisecond))
	if res.Rebooting {
		fmt.Fprintln(s.out, "the appliance is rebooting into it; kiln update status shows whether it was committed")
	} else {
		fmt.Fprintln(s.out, "reboot the appliance to start it (kiln update status shows both slots)")
	}
	return nil
}

// progressReader reports upload progress every `every` percent.
type progressReader struct {
	r     io.Reader
	total int64
	w     io.Writer
	name  string
	every int64
	// mu guards n and next: the transport may read from another goroutine.
	mu   sync.Mutex
	n    int64
	next int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += int64(n)
	if p.total > 0 {
		pct := p.n * 100 / p.total
		if pct >= p.next {
			fmt.Fprintf(p.w, "pushing %s: %d of %d MiB (%d%%)\n", p.name, p.n>>20, p.total>>20, pct)
			p.next = (pct/p.every + 1) * p.every
		}
	}
	return n, err
}

func runUpdateStatus(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("update status", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	state := fs.String("state", "/data/state", "state directory (on the appliance, without --url)")
	run := fs.String("run", "/run/kiln", "run directory (on the appliance, without --url)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("update status: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("update status: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var st slots.Status
	if o.URL != "" {
		c, err := o.Client()
		if err != nil {
			return fmt.Errorf("update status: %w", err)
		}
		if err := c.Do(ctx, "GET", "/api/v1/update/status", nil, &st); err != nil {
			return fmt.Errorf("update status: %w", err)
		}
	} else {
		sys, err := system.Detect(system.Paths{StateDir: *state, RunDir: *run})
		if err != nil {
			return fmt.Errorf("update status: %w (ask an appliance with --url)", err)
		}
		if st, err = sys.Controller(nil).Status(ctx); err != nil {
			return fmt.Errorf("update status: %w", err)
		}
	}
	if *asJSON {
		return printJSON(s.out, st)
	}
	printSlots(s.out, st)
	return nil
}

// printSlots shows both slots as a table, then failures and problems.
func printSlots(w io.Writer, st slots.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SLOT\tSTATE\tVERSION\tGENERATION\tENTRY\tLAST BOOT")
	for _, sl := range st.Slots {
		mark := " "
		if sl.Running {
			mark = "*"
		}
		gen := "-"
		if sl.Generation > 0 {
			gen = strconv.Itoa(sl.Generation)
		}
		state := string(sl.State)
		if sl.Next {
			state += " (boots next)"
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\n", mark, sl.Name, state, slotDash(sl.Version), gen, slotDash(sl.Entry), slotDash(sl.LastBoot))
	}
	tw.Flush()
	fmt.Fprintln(w, "* = running now")
	for _, f := range st.Failed {
		fmt.Fprintf(w, "failed: generation %d (%s): %s\n", f.Generation, slotDash(f.Version), f.Reason)
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

func slotDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runUpdateRollback(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("update rollback", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	reboot := fs.Bool("reboot", false, "reboot into the slot at once")
	state := fs.String("state", "/data/state", "state directory (on the appliance, without --url)")
	run := fs.String("run", "/run/kiln", "run directory (on the appliance, without --url)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return fmt.Errorf("update rollback: %v: %w", err, errUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("update rollback: name the slot to boot next, a or b: %w", errUsage)
	}
	to, err := partitions.ParseSlot(pos[0])
	if err != nil {
		return fmt.Errorf("update rollback: %v: %w", err, errUsage)
	}
	if o.URL != "" {
		c, err := o.Client()
		if err != nil {
			return fmt.Errorf("update rollback: %w", err)
		}
		var st slots.Status
		if err := c.Do(ctx, "POST", "/api/v1/update/rollback", otahttp.RollbackRequest{To: to, Reboot: *reboot}, &st); err != nil {
			return fmt.Errorf("update rollback: %w", err)
		}
		printSlots(s.out, st)
	} else {
		sys, err := system.Detect(system.Paths{StateDir: *state, RunDir: *run})
		if err != nil {
			return fmt.Errorf("update rollback: %w (roll back an appliance with --url)", err)
		}
		c := sys.Controller(slog.New(slog.NewTextHandler(s.err, nil)))
		if err := c.RollBack(ctx, to); err != nil {
			return fmt.Errorf("update rollback: %w", err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		printSlots(s.out, st)
		if *reboot {
			return system.RebootViaInit()
		}
	}
	fmt.Fprintf(s.out, "slot %s boots next\n", to)
	return nil
}

// runUpdateService is the "update" service: it checks update.channel on
// its schedule and installs newer bundles, then reboots into them.
func runUpdateService(ctx context.Context, env svc.Env) error {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := env.Config.Update
	sys, err := system.Detect(system.Paths{StateDir: env.StateDir, RunDir: env.RunDir})
	if err != nil || u.Channel == "" {
		// Nothing to pull here (host mode or no channel): say so and idle,
		// rather than crash-looping.
		if err == nil {
			err = errors.New("update.channel is empty")
		}
		log.Warn("update checks are off", "reason", err)
		if env.Ready != nil {
			env.Ready()
		}
		<-ctx.Done()
		return nil
	}
	p := &pull.Puller{
		Channel: u.Channel, Period: u.Period(), ID: system.Identity(), Compatible: bundle.Compatible(),
		Running: sys.RunningGeneration,
		Failed: func(gen int) bool {
			if sys.State == nil {
				return false
			}
			r, err := sys.State.Load()
			_, failed := r.FailedGeneration(gen)
			return err == nil && failed
		},
		Installer: sys.Installer(u.BootTries(), log),
		Reboot:    system.RebootViaInit,
		Log:       log,
	}
	if env.Ready != nil {
		env.Ready()
	}
	return p.Run(ctx)
}

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
func (w *initWiring) otaPrepare(b *pid1.Boot) {
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
func (w *initWiring) otaSlots(b *pid1.Boot) console.SlotController {
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
func (w *initWiring) otaAfterStart(ctx context.Context, b *pid1.Boot) {
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
func (w *initWiring) rootCheck(ctx context.Context) commit.Check {
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
func (w *initWiring) healthChecks(b *pid1.Boot) []commit.Check {
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

// checkRootVerity rebuilds the root payload's hash tree and compares it with
// the tree in the payload and the root hash about to be signed: a bundle
// whose tree does not match would install a slot stage 1 refuses.
func checkRootVerity(root, value string) error {
	p, err := verity.ParseParams(value)
	if err != nil {
		return fmt.Errorf("--root-verity: %w", err)
	}
	f, err := os.Open(root)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != p.Size() {
		return fmt.Errorf("root payload %s is %d bytes, but its verity value describes %d (data and tree): pass the root.squashfs and root.verity of the same kiln image build --payloads", root, st.Size(), p.Size())
	}
	if err := verity.Check(f, p); err != nil {
		return fmt.Errorf("root payload %s: %w: pass the root.squashfs and root.verity of the same kiln image build --payloads", root, err)
	}
	return nil
}
