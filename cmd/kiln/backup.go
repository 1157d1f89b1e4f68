package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/backup"
	"kiln.dev/kiln/services/backup/backuphttp"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// keyFlags choose a backup's key: a key file or a passphrase (from a file,
// or typed on the terminal).
type keyFlags struct {
	keyFile, passFile string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.keyFile, "key", "", "key file (kiln backup keygen); a public key (age1…) is enough to make a backup")
	fs.StringVar(&k.passFile, "passphrase-file", "", "file whose first line is the passphrase (default: ask on the terminal)")
}

// key returns the chosen key; confirm asks for a typed passphrase twice.
func (k *keyFlags) key(s stdio, confirm bool) (backup.Key, error) {
	switch {
	case k.keyFile != "" && k.passFile != "":
		return backup.Key{}, fmt.Errorf("give --key or --passphrase-file, not both: %w", errUsage)
	case k.keyFile != "":
		return backup.LoadKeyFile(k.keyFile)
	default:
		pass, err := k.passphrase(s, confirm)
		if err != nil {
			return backup.Key{}, err
		}
		return backup.Passphrase(pass, 0)
	}
}

// passphrase reads --passphrase-file's first line, or asks on the
// terminal (twice with confirm).
func (k *keyFlags) passphrase(s stdio, confirm bool) (string, error) {
	switch {
	case k.passFile != "":
		b, err := os.ReadFile(k.passFile)
		if err != nil {
			return "", fmt.Errorf("reading the passphrase: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(line, "\r"), nil
	case terminal(s.in):
		fmt.Fprint(s.err, "Backup passphrase: ")
		pass, err := readSecret(s.in.(*os.File))
		fmt.Fprintln(s.err)
		if err != nil || !confirm {
			return pass, err
		}
		fmt.Fprint(s.err, "Repeat it: ")
		again, err := readSecret(s.in.(*os.File))
		fmt.Fprintln(s.err)
		if err != nil {
			return "", err
		}
		if again != pass {
			return "", errors.New("the two passphrases differ; nothing was written")
		}
		return pass, nil
	default:
		return "", fmt.Errorf("standard input is not a terminal: pass --key FILE or --passphrase-file FILE: %w", errUsage)
	}
}

// runBackup: "kiln backup [-o FILE] [--state DIR] [--config F] [--key F |
// --passphrase-file F]" and "kiln backup keygen -o FILE".
func runBackup(ctx context.Context, args []string, s stdio) error {
	if len(args) > 0 && args[0] == "keygen" {
		return runBackupKeygen(args[1:], s)
	}
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(s.err)
	out := fs.String("o", "", "write the backup to FILE (default kiln-<host>-<time>.backup in the current directory; - for standard output)")
	state := fs.String("state", "/data/state", "state directory (kiln serve: its --state)")
	cfgPath := fs.String("config", "/data/config/kiln.yaml", "config file to include (skipped if missing)")
	var kf keyFlags
	kf.register(fs)
	var o apiclient.Options
	o.Register(fs) // --url: download from an appliance's API instead
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("backup: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("backup: unexpected argument %q (kiln backup [-o FILE] [--state DIR] [--key F]): %w", fs.Arg(0), errUsage)
	}
	if o.URL != "" {
		return backupFromAPI(ctx, &o, &kf, *out, s)
	}
	if _, err := os.Stat(store.Path(*state)); err != nil {
		return fmt.Errorf("backup: no database in %s (%w): pass --state", *state, err)
	}
	key, err := kf.key(s, true)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	st, err := store.Open(ctx, store.Path(*state))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer st.Close()
	host := hostnameOf(*cfgPath)
	now := time.Now()
	src := backup.Source{StateDir: *state, Store: st, ConfigFile: *cfgPath, Version: kilnVersion(), Hostname: host, Now: now}
	if *out == "-" {
		_, err := backup.Create(ctx, s.out, src, key)
		return err
	}
	if *out == "" {
		*out = backup.FileName(host, now)
	}
	m, err := backup.WriteFile(ctx, *out, src, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "wrote %s: %d files, %s\n", *out, len(m.Files), rowSummary(m.Rows))
	return nil
}

// backupFromAPI downloads a new backup from POST /api/v1/backup into out.
func backupFromAPI(ctx context.Context, o *apiclient.Options, kf *keyFlags, out string, s stdio) error {
	var req backuphttp.Request
	if kf.keyFile != "" {
		key, err := kf.key(s, false)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		req.PublicKey = strings.Join(key.PublicKeys(), "\n")
	} else {
		pass, err := kf.passphrase(s, true)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		req.Passphrase = pass
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	resp, err := c.Send(ctx, "POST", "/api/v1/backup", req, "", nil)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	if out == "-" {
		_, err := io.Copy(s.out, resp.Body)
		return err
	}
	if out == "" {
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
		if out = filepath.Base(params["filename"]); out == "." || out == "/" || !strings.HasSuffix(out, backup.FileSuffix) {
			out = backup.FileName("kiln", time.Now())
		}
	}
	n, err := writeAtomic(out, resp.Body)
	if err != nil {
		return fmt.Errorf("backup: the download broke off (%w); nothing was written", err)
	}
	fmt.Fprintf(s.out, "wrote %s (%d bytes)\n", out, n)
	return nil
}

// writeAtomic copies r to path (0600) through a temporary file renamed
// into place only when r ended cleanly.
func writeAtomic(path string, r io.Reader) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return n, err
}

func runBackupKeygen(args []string, s stdio) error {
	fs := flag.NewFlagSet("backup keygen", flag.ContinueOnError)
	fs.SetOutput(s.err)
	out := fs.String("o", "", "write the key file to FILE (required; it must not exist)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("backup keygen: %v: %w", err, errUsage)
	}
	if *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("backup keygen: usage: kiln backup keygen -o FILE: %w", errUsage)
	}
	b, pub, err := backup.GenerateKeyFile()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup keygen: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("backup keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup keygen: %w", err)
	}
	fmt.Fprintf(s.out, "wrote %s (keep it off the appliance; restores need it)\npublic key: %s\n", *out, pub)
	return nil
}

// runRestore: "kiln restore [--state DIR] [--config F] [--force] [--key F |
// --passphrase-file F] FILE".
func runRestore(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(s.err)
	state := fs.String("state", "/data/state", "state directory to restore into (kiln serve: its --state)")
	cfgPath := fs.String("config", "/data/config/kiln.yaml", "where the backup's config goes (\"\" leaves the config alone)")
	runDir := fs.String("run", "/run/kiln", "the supervisor's runtime directory (kiln serve: <state>/run), to refuse while services run")
	force := fs.Bool("force", false, "replace a state directory that holds hosts, leases, runs or users (it is kept aside)")
	var kf keyFlags
	kf.register(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("restore: %v: %w", err, errUsage)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("restore: usage: kiln restore [--state DIR] [--force] [--key F] FILE: %w", errUsage)
	}
	if running := runningServices(ctx, *runDir); len(running) > 0 {
		return fmt.Errorf("restore: services are running (%s): stop kiln first (host mode: stop kiln serve); nothing was changed", strings.Join(running, ", "))
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	key, err := kf.key(s, false)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	res, err := backup.Restore(ctx, f, key, backup.Target{StateDir: *state, ConfigFile: *cfgPath, Force: *force, Now: time.Now()})
	if err != nil {
		return err
	}
	m := res.Manifest
	fmt.Fprintf(s.out, "restored the backup of %s from %s (kiln %s): %d files, %s\n",
		orDash(m.Hostname), m.Created.Format(time.RFC3339), m.Kiln, len(m.Files), rowSummary(m.Rows))
	if res.OldState != "" {
		fmt.Fprintf(s.out, "the previous state is kept in %s\n", res.OldState)
	}
	if res.OldConfig != "" {
		fmt.Fprintf(s.out, "the previous config is kept in %s\n", res.OldConfig)
	}
	return nil
}

// runningServices names the services a supervisor at runDir runs; none
// when no supervisor answers.
func runningServices(ctx context.Context, runDir string) []string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := supervisor.NewClient(supervisor.SocketPath(runDir)).Status(ctx)
	if err != nil {
		return nil
	}
	var names []string
	for _, sv := range st.Services {
		if sv.State != supervisor.StateStopped {
			names = append(names, sv.Name)
		}
	}
	return names
}

// hostnameOf is the config's hostname, else the machine's.
func hostnameOf(cfgPath string) string {
	if _, err := os.Stat(cfgPath); err == nil {
		if c, err := config.Load(cfgPath); err == nil && c.Hostname != "" {
			return c.Hostname
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "kiln"
	}
	h, err := os.Hostname()
	if err != nil {
		return "kiln"
	}
	return h
}

// rowSummary says how many hosts, users and runs a backup holds.
func rowSummary(rows map[string]int64) string {
	var parts []string
	for _, t := range []string{"hosts", "users", "leases", "vet_runs", "boot_events"} {
		parts = append(parts, fmt.Sprintf("%d %s", rows[t], strings.ReplaceAll(t, "_", " ")))
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
