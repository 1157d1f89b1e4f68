package qemu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
)

// These tests boot OVMF without a disk: it reaches its UEFI shell and prints to
// the serial port, which is enough to prove the launcher (console capture,
// Expect, input, QMP, teardown, NIC wiring). The appliance itself is booted in
// qemu/boottest.

func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU (seconds each under TCG); skipped with -short")
	}
	if err := Available(Config{}); err != nil {
		t.Skipf("QEMU tier skipped: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return testlog.New(t, slog.LevelInfo).With("component", "qemu")
}

func startVM(t *testing.T, ctx context.Context, cfg Config) *VM {
	t.Helper()
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	vm, err := Start(ctx, cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// processGone reports whether no process of the group pgid is left.
func processGone(pgid int) bool {
	return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

func TestVMConsoleInputAndQMP(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var tee bytes.Buffer
	dir := t.TempDir()
	vm, err := Start(ctx, Config{WorkDir: dir}, Options{Logger: testLogger(t), Console: &tee})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })

	if st, err := vm.Status(ctx); err != nil || st != "running" {
		t.Fatalf("Status() = %q, %v, want running", st, err)
	}
	// OVMF counts down before its shell; any key skips startup.nsh.
	if _, err := vm.Expect(ctx, regexp.MustCompile(`Press ESC in \d+ seconds`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := vm.SendSerial("\r"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(ctx, regexp.MustCompile(`Shell>`), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Typing a command proves serial input: the shell's reset -s powers off.
	if err := vm.SendSerial("reset -s\r"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("Wait() after `reset -s` = %v, want a clean exit\n%s", err, vm.ConsoleTail())
	}
	if _, _, err := vm.QMP().WaitEvent(ctx, "SHUTDOWN", 0); err != nil {
		t.Errorf("no SHUTDOWN event: %v", err)
	}
	vm.Close()
	log, err := os.ReadFile(filepath.Join(dir, "serial.log"))
	if err != nil || !bytes.Contains(log, []byte("Shell>")) {
		t.Errorf("serial.log (%d bytes, %v) does not hold the shell prompt", len(log), err)
	}
	if !bytes.Contains(tee.Bytes(), []byte("Shell>")) {
		t.Errorf("Options.Console did not receive the console output")
	}
	if _, err := os.Stat(filepath.Join(dir, "vars.fd")); err != nil {
		t.Errorf("per-VM OVMF vars: %v", err)
	}
}

func TestVMTeardown(t *testing.T) {
	needQEMU(t)
	t.Run("shutdown ignored falls back to kill", func(t *testing.T) {
		vm := startVM(t, context.Background(), Config{})
		pid := vm.cmd.Process.Pid
		// The firmware has no ACPI power button handler: the press is ignored.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := vm.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown() = nil for a guest that ignores the power button, want an error")
		}
		select {
		case <-vm.Exited():
		case <-time.After(10 * time.Second):
			t.Fatal("QEMU still runs after a failed Shutdown")
		}
		if !processGone(pid) {
			t.Errorf("process group %d still exists", pid)
		}
	})
	t.Run("context cancel kills", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		vm := startVM(t, ctx, Config{Mgmt: &Mgmt{}})
		pid := vm.cmd.Process.Pid
		if vm.HTTPSPort() == 0 || vm.HTTPPort() == 0 {
			t.Fatalf("ports not resolved: https %d http %d", vm.HTTPSPort(), vm.HTTPPort())
		}
		// slirp listens on the forwarded ports as soon as QEMU runs.
		for _, p := range []int{vm.HTTPSPort(), vm.HTTPPort()} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), 5*time.Second)
			if err != nil {
				t.Errorf("forwarded port %d: %v", p, err)
				continue
			}
			c.Close()
		}
		cancel()
		select {
		case <-vm.Exited():
		case <-time.After(10 * time.Second):
			t.Fatal("QEMU still runs 10s after its context was cancelled")
		}
		if !processGone(pid) {
			t.Errorf("process group %d still exists", pid)
		}
		if _, err := vm.Expect(context.Background(), regexp.MustCompile(`never`), time.Minute); !errors.Is(err, ErrExited) {
			t.Errorf("Expect() after exit error = %v, want ErrExited", err)
		}
	})
	t.Run("port in use fails cleanly", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy := l.Addr().(*net.TCPAddr).Port
		_, err = Start(context.Background(), Config{WorkDir: t.TempDir(), Mgmt: &Mgmt{HTTPSPort: busy, HTTPPort: -1}}, Options{Logger: testLogger(t)})
		if err == nil || !strings.Contains(err.Error(), "host forwarding") {
			t.Fatalf("Start() with a busy port error = %v, want QEMU's host forwarding error", err)
		}
	})
}

// TestVMExtraNICs checks that frames from a guest NIC reach the L2 segment on
// loopback, for both transports: OVMF sends network boot traffic at once.
func TestVMExtraNICs(t *testing.T) {
	needQEMU(t)
	const mac = "52:54:00:6b:6c:77"
	macBytes, _ := net.ParseMAC(mac)
	tests := []struct {
		name   string
		listen func() (net.PacketConn, NIC, error)
	}{
		{"dgram", func() (net.PacketConn, NIC, error) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return nil, NIC{}, err
			}
			local, err := FreeUDPPort()
			return pc, NIC{Kind: Dgram, LocalPort: local, RemotePort: pc.LocalAddr().(*net.UDPAddr).Port, MAC: mac, Boot: true}, err
		}},
		{"mcast", func() (net.PacketConn, NIC, error) {
			port, err := FreeUDPPort()
			if err != nil {
				return nil, NIC{}, err
			}
			group := &net.UDPAddr{IP: net.IPv4(230, 0, 0, 1), Port: port}
			lo, err := net.InterfaceByName("lo")
			if err != nil {
				return nil, NIC{}, err
			}
			pc, err := net.ListenMulticastUDP("udp4", lo, group)
			return pc, NIC{Kind: Mcast, Group: group.String(), MAC: mac, Boot: true}, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, nic, err := tt.listen()
			if err != nil {
				t.Skipf("cannot listen on loopback for %s: %v", tt.name, err)
			}
			defer pc.Close()
			startVM(t, context.Background(), Config{NICs: []NIC{nic}, NoWatchdog: true})
			pc.SetReadDeadline(time.Now().Add(90 * time.Second))
			buf := make([]byte, 2048)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("no frame from the guest NIC on the %s segment: %v", tt.name, err)
				}
				if n >= 14 && bytes.Equal(buf[6:12], macBytes) {
					return // an Ethernet frame with the NIC's source MAC
				}
			}
		})
	}
}
