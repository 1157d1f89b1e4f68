package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/nfs/nfshttp"
	"kiln.dev/kiln/services/nfs/roots"
	"kiln.dev/kiln/services/store"
)

func TestRootsCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root images keep their files' owners: needs root (chown)")
	}
	cfg := config.Provisioning{Subnets: []config.Subnet{{Name: "hall", CIDR: "10.0.0.0/24", Mode: config.ModeAuthoritative}}}
	a := newAppliance(t, func(srv *api.Server, db *store.Store, state string) {
		(&nfshttp.Handler{Roots: &roots.Manager{Store: db, Layout: nfs.LayoutOf(state)}, Config: cfg, StateDir: state,
			Log: slog.New(slog.DiscardHandler)}).Mount(srv)
	})
	if _, err := a.db.CreateHost(context.Background(), store.Host{Name: "pc-01", MACs: []string{"52:54:00:00:01:01"},
		IPv4: netip.MustParseAddr("10.0.0.11"), RootImage: "contest"}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "credentials.json")
	cred := []string{"--credentials", creds}
	if _, errOut, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin")...); err != nil {
		t.Fatalf("login = %v\n%s", err, errOut)
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "contest")
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, "sbin"), 0o755)
	os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte("#!/bin/sh\necho contest\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "os-release"), []byte("ID=contest\n"), 0o644)
	tgz := filepath.Join(tmp, "contest.tar.gz")
	f, _ := os.Create(tgz)
	zw := gzip.NewWriter(f)
	if err := roots.WriteTar(zw, dir); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	f.Close()
	notRoot := filepath.Join(tmp, "home")
	os.MkdirAll(filepath.Join(notRoot, "alice"), 0o755)
	bad := filepath.Join(tmp, "bad.tar")
	bf, _ := os.Create(bad)
	tw := tar.NewWriter(bf)
	tw.WriteHeader(&tar.Header{Name: "../../etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	bf.Close()

	steps := []struct {
		args []string
		want string // in stdout, or in the error when it starts with "error: "
	}{
		{[]string{"import", dir, "--name", "contest"}, "imported contest@1: "},
		{[]string{"import", tgz, "--name", "contest", "--promote"}, "imported contest@2: "},
		{[]string{"import", notRoot, "--name", "contest"}, "error: image: not a Linux root: it has no directory /etc"},
		{[]string{"import", bad, "--name", "contest"}, "error: leads outside the root"},
		{[]string{"import", dir, "--name", "Contest"}, "error: name: \"Contest\" is not a valid root image name"},
		{[]string{"import", dir}, "error: --name is required"},
		{[]string{"list"}, "contest@2  yes"},
		{[]string{"promote", "contest@1"}, "contest@1 promoted"},
		{[]string{"rm", "contest@1"}, "error: promoted version"},
		{[]string{"rm", "contest@2"}, "contest@2 removed"},
		{[]string{"rm", "contest@9"}, "error: not found"},
		{[]string{"promote", "contest"}, "error: does not name a version"},
	}
	for _, s := range steps {
		out, errOut, err := runCmd(t, runRoots, "", append(s.args, cred...)...)
		if want, ok := strings.CutPrefix(s.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("roots %v = %v, want an error with %q", s.args, err, want)
			}
			continue
		}
		if err != nil || !strings.Contains(out, s.want) {
			t.Errorf("roots %v = %q, %v (stderr %q); want %q", s.args, out, err, errOut, s.want)
		}
	}
	out, _, err := runCmd(t, runRoots, "", append([]string{"list", "--json"}, cred...)...)
	var l nfshttp.ListJSON
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Roots) != 1 || l.Roots[0].Ref != "contest@1" ||
		len(l.Roots[0].Boots) != 1 || l.Roots[0].Boots[0] != "pc-01" || l.Roots[0].Source != "contest/" {
		t.Errorf("list --json = %q, %v; want contest@1 (from the directory) booted by pc-01", out, err)
	}
	if got, err := os.ReadFile(filepath.Join(a.state, "nfs", "exports", "roots", "contest", "1", "etc", "os-release")); err != nil || string(got) != "ID=contest\n" {
		t.Errorf("contest@1's os-release on the appliance = %q, %v", got, err)
	}
}
