package backup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kiln.dev/kiln/services/store"
)

// TestBackupRestoreRoundTrip backs up a populated state directory (real
// SQLite on disk, written to while the backup runs), restores it into a new
// state directory and diffs rows and files.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	st := populate(t, src)
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "kiln.yaml")
	writeFile(t, cfg, "hostname: lab1\n", 0o600)

	// A service keeps writing while the backup runs: the snapshot must
	// still be one consistent state.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := st.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:02", Kind: "tftp", Detail: "while backing up"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	key := testKey(t, "correct horse")
	var buf bytes.Buffer
	m, err := Create(ctx, &buf, Source{StateDir: src, Store: st, ConfigFile: cfg, Version: "test", Hostname: "lab1", Now: testNow}, key)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if m.Rows["hosts"] != 2 || m.Rows["users"] != 2 || m.Rows["vet_runs"] != 1 || m.Rows["leases"] != 1 {
		t.Errorf("manifest rows = %v, want 2 hosts, 2 users, 1 vet run, 1 lease", m.Rows)
	}
	if strings.Contains(buf.String(), "run-token-secret") || strings.Contains(buf.String(), "TLSKEY") {
		t.Error("the backup holds plaintext secrets")
	}

	dstParent := t.TempDir()
	dst := filepath.Join(dstParent, "state")
	newCfg := filepath.Join(t.TempDir(), "config", "kiln.yaml")
	res, err := Restore(ctx, bytes.NewReader(buf.Bytes()), key, Target{StateDir: dst, ConfigFile: newCfg, Now: testNow})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.OldState != "" || !res.Config {
		t.Errorf("Restore = old state %q, config %v; want none kept aside and the config restored", res.OldState, res.Config)
	}

	// Rows: every table as counted at the snapshot.
	rst, err := store.Open(ctx, store.Path(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	rows, err := rst.RowCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.Rows, rows); diff != "" {
		t.Errorf("restored row counts differ from the backup's (-backup +restored):\n%s", diff)
	}
	wantHosts, _ := st.ListHosts(ctx)
	gotHosts, _ := rst.ListHosts(ctx)
	if diff := cmp.Diff(wantHosts, gotHosts, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("hosts differ (-source +restored):\n%s", diff)
	}
	wantUsers, _ := st.ListUsers(ctx)
	gotUsers, _ := rst.ListUsers(ctx)
	if diff := cmp.Diff(wantUsers, gotUsers); diff != "" {
		t.Errorf("users differ (-source +restored):\n%s", diff)
	}
	// Sealed secrets open with the restored secrets.key.
	run, err := rst.VetRunByID(ctx, 1)
	if err != nil || run.Token != "run-token-secret" || run.SSHPrivate != "PRIVATE KEY" {
		t.Errorf("restored run 1 = token %q, ssh %q, %v; want the sealed secrets readable", run.Token, run.SSHPrivate, err)
	}

	// Files: the same as the source's, minus what a backup leaves out.
	if diff := cmp.Diff(treeOf(t, src, true), treeOf(t, dst, true)); diff != "" {
		t.Errorf("restored files differ (-source +restored):\n%s", diff)
	}
	for _, gone := range []string{"iscsi/volumes/node1/root.img", "ota/db-snapshot/kiln.db", "run/supervisor.sock", "backups/kiln-1.backup"} {
		if _, err := os.Stat(filepath.Join(dst, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was restored; backups leave it out", gone)
		}
	}
	if b, err := os.ReadFile(newCfg); err != nil || string(b) != "hostname: lab1\n" {
		t.Errorf("restored config = %q, %v; want the backed-up one", b, err)
	}
	if info, err := os.Stat(filepath.Join(dst, "mgmt", "tls", "key.pem")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("restored TLS key mode = %v, %v; want 0600", info.Mode(), err)
	}

	// A second restore onto the now-used state is refused without Force
	// and changes nothing…
	_, err = Restore(ctx, bytes.NewReader(buf.Bytes()), key, Target{StateDir: dst, Now: testNow.Add(1)})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Restore onto a used state = %v, want ErrInUse", err)
	}
	// …and with Force keeps the old state aside, earlier backups moving
	// along with the appliance.
	writeFile(t, filepath.Join(dst, BackupDirName, "kiln-2.backup"), "LATER", 0o600)
	writeFile(t, newCfg, "hostname: changed\n", 0o600)
	res, err = Restore(ctx, bytes.NewReader(buf.Bytes()), key, Target{StateDir: dst, ConfigFile: newCfg, Force: true, Now: testNow})
	if err != nil {
		t.Fatalf("Restore --force: %v", err)
	}
	if res.OldState != dst+".before-restore-20261207T150000Z" {
		t.Errorf("old state kept as %q", res.OldState)
	}
	if _, err := os.Stat(store.Path(res.OldState)); err != nil {
		t.Errorf("the replaced state's database is gone: %v", err)
	}
	if b, err := os.ReadFile(res.OldConfig); err != nil || string(b) != "hostname: changed\n" {
		t.Errorf("replaced config kept as %q = %q, %v", res.OldConfig, b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, BackupDirName, "kiln-2.backup")); err != nil || string(b) != "LATER" {
		t.Errorf("earlier backups did not move to the restored state: %q, %v", b, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dstParent, ".state.restore-*"))
	if len(leftovers) != 0 {
		t.Errorf("staging directories left behind: %v", leftovers)
	}
}

// treeOf maps the files below dir to their contents, leaving out what a
// backup does not carry (and the live database, compared by rows).
func treeOf(t *testing.T, dir string, skipExcluded bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, store.FileName) || (skipExcluded && excluded(rel)) {
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
