package capture_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/initramfs"
	"kiln.dev/kiln/image/kmod"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/services/vetting/inventory/internal/capture"
)

var captureQEMU = flag.Bool("capture-qemu", false, "boot a QEMU q35 machine with virtio, NVMe and SATA disks and an e1000e NIC and capture it into inventory/testdata/qemu")

// guestModules are the drivers captureinit loads (it resolves their
// dependencies from the modules.dep written here).
var guestModules = []string{"virtio_pci", "virtio_blk", "nvme", "ahci", "sd_mod", "e1000e"}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// TestCaptureQEMU boots Debian's kernel (the image's pinned one) with an
// initramfs holding captureinit under QEMU (TCG, SeaBIOS, q35) and unpacks
// what it prints into inventory/testdata/qemu: a real QEMU DMI table,
// q35's sysfs, and the answers of QEMU's NVMe controller and AHCI disk to
// the agent's identify and SMART commands. Run it by hand with
// go test -run TestCaptureQEMU -capture-qemu; it takes about a minute.
func TestCaptureQEMU(t *testing.T) {
	if !*captureQEMU {
		t.Skip("capturing a QEMU machine only with -capture-qemu")
	}
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skipf("no %s: %v", qemu.DefaultBinary, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root := repoRoot(t)
	work := t.TempDir()

	lock, err := debs.ReadLock(filepath.Join(root, "image", "packages.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := lock.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	deb, err := debs.Cache{Dir: filepath.Join(root, "out", "cache")}.Fetch(ctx, pin)
	if err != nil {
		t.Fatalf("fetching the kernel package: %v", err)
	}
	release := pin.KernelRelease()
	modDir := "lib/modules/" + release + "/"
	var vmlinuz, builtin []byte
	var mods []kmod.Module
	data := map[string][]byte{}
	err = debs.WalkDeb(ctx, deb, func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		switch {
		case h.Name == "boot/vmlinuz-"+release:
			vmlinuz, err = io.ReadAll(r)
			return err
		case h.Name == modDir+"modules.builtin":
			builtin, err = io.ReadAll(r)
			return err
		case strings.HasPrefix(h.Name, modDir) && strings.HasSuffix(h.Name, ".ko"):
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			info, err := kmod.ParseModinfo(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			rel := strings.TrimPrefix(h.Name, modDir)
			mods = append(mods, kmod.Module{Path: rel, Info: info})
			data[rel] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	closure, _, err := kmod.NewTree(mods, strings.Split(string(builtin), "\n")).Closure(guestModules, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := kmod.Files(closure)
	if err != nil {
		t.Fatal(err)
	}
	files["modules.builtin"] = builtin

	initBin := filepath.Join(work, "init")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", initBin, "kiln.dev/kiln/services/vetting/inventory/internal/captureinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building captureinit: %v\n%s", err, out)
	}
	initData, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	cpio := []initramfs.File{{Path: "init", Mode: 0o755, Data: initData}}
	for rel, b := range files {
		cpio = append(cpio, initramfs.File{Path: modDir + rel, Mode: 0o644, Data: b})
	}
	for _, m := range closure {
		cpio = append(cpio, initramfs.File{Path: modDir + m.Path, Mode: 0o644, Data: data[m.Path]})
	}
	var initrd bytes.Buffer
	if err := initramfs.Write(&initrd, cpio); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"vmlinuz": vmlinuz, "initrd": initrd.Bytes()} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct {
		name string
		size string
	}{{"virtio.raw", "4G"}, {"nvme.raw", "2G"}, {"sata.raw", "1G"}} {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-f", "raw", filepath.Join(work, d.name), d.size).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, out)
		}
	}

	vm, err := qemu.Start(ctx, qemu.Config{
		WorkDir: filepath.Join(work, "vm"), Firmware: qemu.BIOS, MemoryMiB: 2048, CPUs: 2, NoWatchdog: true,
		Disks: []qemu.Disk{{Path: filepath.Join(work, "virtio.raw"), Format: "raw"}},
		Extra: []string{
			"-kernel", filepath.Join(work, "vmlinuz"), "-initrd", filepath.Join(work, "initrd"),
			"-append", "console=ttyS0 quiet loglevel=1 panic=-1",
			"-drive", "file=" + filepath.Join(work, "nvme.raw") + ",if=none,id=nv0,format=raw",
			"-device", "nvme,drive=nv0,serial=kiln-nvme0",
			"-drive", "file=" + filepath.Join(work, "sata.raw") + ",if=none,id=sata0,format=raw",
			"-device", "ide-hd,drive=sata0,bus=ide.0",
			"-netdev", "user,id=n0,restrict=on", "-device", "e1000e,netdev=n0,mac=52:54:00:12:34:56",
		},
	}, qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	end := regexp.MustCompile(`KILN-CAPTURE-END ([0-9a-f]{64})|captureinit: error: .*`)
	line, err := vm.ExpectLine(ctx, end, 4*time.Minute)
	if err != nil {
		t.Fatalf("waiting for the capture: %v\nconsole:\n%s", err, vm.ConsoleTail())
	}
	m := end.FindStringSubmatch(line.Text)
	if m == nil || m[1] == "" {
		t.Fatalf("captureinit failed: %s\nconsole:\n%s", line.Text, vm.ConsoleTail())
	}
	var enc strings.Builder
	for _, l := range vm.Lines() {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l.Text), "KC:"); ok {
			enc.WriteString(s)
		}
	}
	tarData, err := base64.StdEncoding.DecodeString(enc.String())
	if err != nil {
		t.Fatalf("decoding the capture: %v", err)
	}
	if sum := sha256.Sum256(tarData); hex.EncodeToString(sum[:]) != m[1] {
		t.Fatalf("capture checksum %x, console says %s: lines were lost", sum, m[1])
	}
	dst := filepath.Join(root, "services", "vetting", "inventory", "testdata", "qemu")
	if err := capture.Unpack(bufio.NewReader(bytes.NewReader(tarData)), dst); err != nil {
		t.Fatal(err)
	}
	t.Logf("captured %d bytes into %s", len(tarData), dst)
}
