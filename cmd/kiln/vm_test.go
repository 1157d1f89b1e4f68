package main

import (
	"bytes"
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
)

func TestParseVMRunFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(vmRunOptions) string // "" when fine
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(o vmRunOptions) string {
			want := vmRunOptions{image: "out/kiln.qcow2", state: "out/vm", diskSize: "2G", mem: 1024, cpus: 2,
				httpsPort: 8443, httpPort: 8080, firmware: "uefi", readyTimeout: 10 * time.Minute, shutdownTimeout: time.Minute}
			return cmp.Diff(want, o, cmp.AllowUnexported(vmRunOptions{}))
		}},
		{name: "nics", args: []string{"--nic", "dgram:47001:47002", "--nic", "mcast:230.0.0.1:47010,mac=52:54:00:00:00:09"}, check: func(o vmRunOptions) string {
			want := []qemu.NIC{
				{Kind: qemu.Dgram, LocalPort: 47001, RemotePort: 47002, MAC: "52:54:00:6b:6c:10"},
				{Kind: qemu.Mcast, Group: "230.0.0.1:47010", MAC: "52:54:00:00:00:09"},
			}
			return cmp.Diff(want, o.nics)
		}},
		{name: "targets and config", args: []string{"--targets", "2", "--config", "my.yaml"}, check: func(o vmRunOptions) string {
			if o.targets != 2 || o.config != "my.yaml" {
				return fmt.Sprintf("targets %d, config %q; want 2 and my.yaml", o.targets, o.config)
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

func vmNeedQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
}

func TestPrepareDisk(t *testing.T) {
	vmNeedQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	o := vmRunOptions{image: base, state: filepath.Join(dir, "vm"), diskSize: "4M"}
	os.MkdirAll(o.state, 0o755)
	var msgs bytes.Buffer

	disk, cleanup, err := prepareDisk(ctx, o, &msgs)
	if err != nil {
		t.Fatalf("prepareDisk() error = %v", err)
	}
	cleanup()
	info, err := qemu.Inspect(ctx, disk)
	if err != nil || info.Format != "qcow2" || info.VirtualSize != 4<<20 || info.BackingFile != base {
		t.Fatalf("overlay = %+v, %v, want a 4 MiB qcow2 backed by %s", info, err, base)
	}
	fi1, _ := os.Stat(disk)
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(disk)
	if !os.SameFile(fi1, fi2) {
		t.Errorf("prepareDisk() replaced the overlay although the image did not change")
	}

	// A rebuild with the same bytes keeps the overlay.
	future := time.Now().Add(time.Hour)
	os.Chtimes(base, future, future)
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(disk); !os.SameFile(fi1, fi) {
		t.Errorf("prepareDisk() replaced the overlay after a rebuild with identical bytes")
	}

	// The image changes (and has no GPT to carry data over): the old overlay
	// is kept aside and a new one of the same size is made.
	if err := os.WriteFile(base, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	fi3, _ := os.Stat(disk)
	if os.SameFile(fi2, fi3) {
		t.Errorf("prepareDisk() reused the overlay of a changed image")
	}
	if _, err := os.Stat(disk + ".old"); err != nil || !strings.Contains(msgs.String(), "layout differs") {
		t.Errorf("old overlay not kept (%v) or not reported (%q)", err, msgs.String())
	}
	if info, err := qemu.Inspect(ctx, disk); err != nil || info.VirtualSize != 4<<20 {
		t.Errorf("new overlay = %+v, %v, want the old one's size", info, err)
	}

	o.snapshot = true
	snap, cleanup, err := prepareDisk(ctx, o, &msgs)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(snap) == o.state {
		t.Errorf("--snapshot overlay %s is in the state dir", snap)
	}
	cleanup()
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Errorf("--snapshot overlay %s survives cleanup: %v", snap, err)
	}

	o.image = filepath.Join(dir, "missing.qcow2")
	if _, _, err := prepareDisk(ctx, o, &msgs); err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("prepareDisk(missing image) error = %v, want a hint to run make image", err)
	}
}

// TestVMRun boots a blank disk without NICs: OVMF finds nothing to boot and
// starts its shell, which is enough to check the console relay, the escapes and the
// bounded shutdown of a guest that ignores the power button.
func TestVMRun(t *testing.T) {
	vmNeedQemuImg(t)
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
