package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/vmrun"
)

func TestParseVMRunFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(vmrun.Options) string // "" when fine
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(o vmrun.Options) string {
			want := vmrun.Options{Image: "out/kiln.qcow2", State: "out/vm", DiskSize: "2G", Mem: 1024, CPUs: 2,
				HTTPSPort: 8443, HTTPPort: 8080, Firmware: "uefi", ReadyTimeout: 10 * time.Minute, ShutdownTimeout: time.Minute}
			return cmp.Diff(want, o, cmp.AllowUnexported(vmrun.Options{}))
		}},
		{name: "nics", args: []string{"--nic", "dgram:47001:47002", "--nic", "mcast:230.0.0.1:47010,mac=52:54:00:00:00:09"}, check: func(o vmrun.Options) string {
			want := []qemu.NIC{
				{Kind: qemu.Dgram, LocalPort: 47001, RemotePort: 47002, MAC: "52:54:00:6b:6c:10"},
				{Kind: qemu.Mcast, Group: "230.0.0.1:47010", MAC: "52:54:00:00:00:09"},
			}
			return cmp.Diff(want, o.NICs)
		}},
		{name: "targets and config", args: []string{"--targets", "2", "--config", "my.yaml"}, check: func(o vmrun.Options) string {
			if o.Targets != 2 || o.Config != "my.yaml" {
				return fmt.Sprintf("targets %d, config %q; want 2 and my.yaml", o.Targets, o.Config)
			}
			return ""
		}},
		{name: "negative targets", args: []string{"--targets", "-1"}, wantErr: "--targets -1"},
		{name: "too many targets", args: []string{"--targets", "9"}, wantErr: "--targets 9"},
		{name: "targets without image", args: []string{"--targets", "1", "--no-image"}, wantErr: "--no-image"},
		{name: "bad nic", args: []string{"--nic", "tap:x"}, wantErr: "--nic"},
		{name: "bad firmware", args: []string{"--firmware", "grub"}, wantErr: "--firmware"},
		{name: "bad port", args: []string{"--https-port", "70000"}, wantErr: "--https-port"},
		{name: "extra args", args: []string{"out/kiln.qcow2"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--kvm"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseVMRunFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseVMRunFlags(%q) error = %v, want a usage error mentioning %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseVMRunFlags(%q) error = %v", tt.args, err)
			}
			if diff := tt.check(o); diff != "" {
				t.Errorf("parseVMRunFlags(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestVMRun(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	if err := qemu.Available(qemu.Config{}); err != nil {
		t.Skipf("QEMU tier skipped: %v", err)
	}
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var out, errOut syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runVM(ctx, []string{"run", "--image", blank, "--state", filepath.Join(dir, "vm"),
			"--https-port", "-1", "--http-port", "-1", "--shutdown-timeout", "2s"}, stdio{inR, &out, &errOut})
	}()
	waitFor := func(what string, b *syncbuf.Buffer, sub string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !strings.Contains(b.String(), sub) {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("%s never showed %q; it holds:\n%s", what, sub, b.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("stdout", &out, "startup.nsh")
	inW.Write([]byte("\r")) // skip startup.nsh: proves input reaches the guest
	waitFor("stdout", &out, "Shell>")
	inW.Write([]byte{0x01, 'h'})
	waitFor("stderr", &errOut, "Ctrl-A p")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("vm run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("vm run did not return 30s after SIGINT")
	}
	if s := errOut.String(); !strings.Contains(s, "pressing the power button") || !strings.Contains(s, "did not power off") {
		t.Errorf("stderr does not tell about the shutdown:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "vm", "disk.qcow2")); err != nil {
		t.Errorf("persistent overlay: %v", err)
	}
}
