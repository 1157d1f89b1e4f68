package appliance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

func TestImportHostsFile(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state") // created on import
	file := filepath.Join(t.TempDir(), "hosts.yaml")
	var cfg config.Config
	if res, err := ImportHostsFile(ctx, cfg, state); res != nil || err != nil {
		t.Fatalf("ImportHostsFile(no hosts_file) = %v, %v, want nothing", res, err)
	}
	cfg.Provisioning.HostsFile = file
	if _, err := ImportHostsFile(ctx, cfg, state); err == nil || !strings.Contains(err.Error(), "provisioning.hosts_file") {
		t.Errorf("ImportHostsFile(missing file) = %v, want an error naming provisioning.hosts_file", err)
	}
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hosts:\n  - {name: pxe-1, macs: [52:54:00:00:01:01], boot_profile: kernel, kernel: t/vmlinuz}\n")
	if res, err := ImportHostsFile(ctx, cfg, state); err != nil || res.Created != 1 {
		t.Fatalf("ImportHostsFile(first start) = %+v, %v, want 1 created", res, err)
	}
	// Every start imports again: the file wins for the hosts it names.
	write("hosts:\n  - {name: pxe-1, macs: [52:54:00:00:01:02], boot_profile: local}\n")
	if res, err := ImportHostsFile(ctx, cfg, state); err != nil || res.Updated != 1 {
		t.Fatalf("ImportHostsFile(second start) = %+v, %v, want 1 updated", res, err)
	}
	db, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if h, err := db.HostByName(ctx, "pxe-1"); err != nil || h.BootProfile != store.BootLocal || h.MACs[0] != "52:54:00:00:01:02" {
		t.Errorf("pxe-1 after the second import = %+v, %v", h, err)
	}
	write("hosts:\n  - {name: pxe-2, boot_profile: nope}\n")
	if _, err := ImportHostsFile(ctx, cfg, state); err == nil || !strings.Contains(err.Error(), "boot_profile") {
		t.Errorf("ImportHostsFile(bad profile) = %v, want an error naming boot_profile", err)
	}
}
