package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/iscsi/iscsihttp"
	"kiln.dev/kiln/services/store"
)

func TestVolumesCLI(t *testing.T) {
	a := newAppliance(t, func(srv *api.Server, db *store.Store, state string) {
		m, err := iscsi.OpenManager(context.Background(), db, state, "hall.example", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		(&iscsihttp.Handler{Manager: m, Log: slog.New(slog.DiscardHandler)}).Mount(srv)
	})
	if _, err := a.db.CreateHost(context.Background(), store.Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "credentials.json")
	cred := []string{"--credentials", creds}
	if _, errOut, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin")...); err != nil {
		t.Fatalf("login = %v\n%s", err, errOut)
	}
	vol := func(stdin string, args ...string) (string, string, error) {
		return runCmd(t, runVolumes, stdin, append(args, cred...)...)
	}
	img := filepath.Join(t.TempDir(), "debian.raw")
	os.WriteFile(img, append([]byte("boot sector"), make([]byte, 2<<20)...), 0o644)
	steps := []struct {
		args  []string
		stdin string
		want  string // in stdout, or in the error when it starts with "error: "
	}{
		{[]string{"upload", "debian", "--image", img}, "", "debian: 3 MiB"},
		{[]string{"create", "node1/boot", "--from", "debian", "--size", "8M"}, "", "node1/boot: 8 MiB"},
		{[]string{"create", "node1/data", "--size", "1G"}, "", "target iqn.2026-01.example.hall:node1"},
		{[]string{"create", "node1/huge", "--size", "1000000T"}, "", "error: volume quota exceeded"},
		{[]string{"grow", "node1/boot", "--size", "16M"}, "", "node1/boot: 16 MiB"},
		{[]string{"grow", "node1/boot", "--size", "4M"}, "", "error: only grow"},
		{[]string{"list"}, "", "node1/boot  16 MiB"},
		{[]string{"rm", "node1/data"}, "data\n", "error: confirm with exactly"},
		{[]string{"rm", "node1/data"}, "node1/data\n", "node1/data deleted"},
		{[]string{"chap", "node1", "--mutual"}, "", "CHAP secret"},
		{[]string{"create"}, "", "error: want 1 argument"},
	}
	for _, s := range steps {
		out, errOut, err := vol(s.stdin, s.args...)
		if want, ok := strings.CutPrefix(s.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("volumes %v = %v, want an error with %q", s.args, err, want)
			}
			continue
		}
		if err != nil || !strings.Contains(out, s.want) {
			t.Errorf("volumes %v = %q, %v (stderr %q); want %q", s.args, out, err, errOut, s.want)
		}
	}
	out, _, err := vol("", "list", "--json")
	var l iscsihttp.ListJSON
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Volumes) != 2 || l.Volumes[1].LUN != 0 {
		t.Errorf("list --json = %q, %v; want debian and node1/boot at LUN 0", out, err)
	}
	got, _ := os.ReadFile(filepath.Join(a.state, "iscsi", "volumes", "hosts", "node1", "boot.img"))
	if !bytes.HasPrefix(got, []byte("boot sector")) || len(got) != 16<<20 {
		t.Errorf("node1/boot's file = %d bytes starting %q; want the clone of the image, grown to 16 MiB", len(got), got[:min(len(got), 11)])
	}
}
