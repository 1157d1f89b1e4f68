// Command captureinit is the /init of a throwaway initramfs that captures a
// QEMU machine for the inventory's fixtures (see the capture package's
// TestCaptureQEMU): it mounts /proc, /sys and /dev, loads the disk and NIC
// drivers, brings the NICs up, records what inventory.Collect reads — with
// real NVMe and ATA commands — and prints the capture tar base64-encoded on
// the serial console between markers, then powers off.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/inventory/internal/capture"
)

// modules are the drivers of the capture VM's devices.
var modules = []string{"virtio_pci", "virtio_blk", "nvme", "ahci", "sd_mod", "e1000e"}

// Markers framing the capture on the console; data lines start with "KC:".
const (
	beginMarker = "KILN-CAPTURE-BEGIN"
	endMarker   = "KILN-CAPTURE-END"
)

func main() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.fstype, 0, "")
	}
	con, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	if err := run(con); err != nil {
		fmt.Fprintf(con, "\ncaptureinit: error: %v\n", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run(con io.Writer) error {
	log := slog.New(slog.NewTextHandler(con, nil))
	loader, err := kmod.NewLoader(kmod.Options{Logger: log})
	if err != nil {
		return err
	}
	for _, m := range modules {
		if err := loader.Load(m, ""); err != nil {
			return fmt.Errorf("loading %s: %w", m, err)
		}
	}
	// Devices appear asynchronously after their drivers load.
	wait(func() bool {
		return exists("/sys/block/vda") && exists("/sys/block/nvme0n1") && exists("/sys/block/sda") && exists("/sys/class/net/eth0")
	}, 30*time.Second)
	nics, _ := filepath.Glob("/sys/class/net/eth*")
	for _, n := range nics {
		if err := linkUp(filepath.Base(n)); err != nil {
			return err
		}
	}
	wait(func() bool {
		b, err := os.ReadFile("/sys/class/net/eth0/carrier")
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}, 15*time.Second)

	var buf bytes.Buffer
	dev := inventory.Devices{Dir: "/dev"}
	inv, err := capture.Machine(context.Background(), &buf, "/", dev, dev)
	if err != nil {
		return err
	}
	fmt.Fprintf(con, "\ncaptureinit: %d disks, %d NICs, warnings %q\n", len(inv.Disks), len(inv.NICs), inv.Warnings)
	sum := sha256.Sum256(buf.Bytes())
	enc := base64.StdEncoding.EncodeToString(buf.Bytes())
	var out strings.Builder
	out.WriteString("\n" + beginMarker + "\n")
	for len(enc) > 0 {
		n := min(len(enc), 96)
		out.WriteString("KC:" + enc[:n] + "\n")
		enc = enc[n:]
	}
	fmt.Fprintf(&out, "%s %x\n", endMarker, sum)
	_, err = io.WriteString(con, out.String())
	return err
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func wait(ok func() bool, limit time.Duration) {
	for end := time.Now().Add(limit); !ok() && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
	}
}

// linkUp sets IFF_UP on an interface, as the live image's network setup does.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}
