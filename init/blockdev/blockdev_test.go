package blockdev

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"kiln.dev/kiln/init/gpt"
)

const rootB = "B2B2B2B2-2222-4333-8444-555566667777"

// fakeSys lays out sysfs and /dev like the kernel does for a virtio disk "vda"
// with four partitions (vda is a GPT image built by sgdisk) and a cdrom "sr0".
func fakeSys(t *testing.T) Sys {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk not installed (apt-get install gdisk): needed to build test disks")
	}
	dir := t.TempDir()
	s := Sys{Block: filepath.Join(dir, "sys/class/block"), Dev: filepath.Join(dir, "dev")}
	devices := filepath.Join(dir, "sys/devices/pci0000:00/0000:00:04.0/virtio1/block")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(s.Block, 0o755))
	must(os.MkdirAll(s.Dev, 0o755))
	must(os.MkdirAll(filepath.Join(devices, "vda", "queue"), 0o755))
	must(os.WriteFile(filepath.Join(devices, "vda", "queue", "logical_block_size"), []byte("512\n"), 0o644))
	must(os.WriteFile(filepath.Join(devices, "vda", "dev"), []byte("254:0\n"), 0o644))
	must(os.Symlink(filepath.Join(devices, "vda"), filepath.Join(s.Block, "vda")))
	for i := 1; i <= 4; i++ {
		p := filepath.Join(devices, "vda", "vda"+strconv.Itoa(i))
		must(os.MkdirAll(p, 0o755))
		must(os.WriteFile(filepath.Join(p, "partition"), []byte(strconv.Itoa(i)+"\n"), 0o644))
		must(os.WriteFile(filepath.Join(p, "dev"), []byte("254:"+strconv.Itoa(i)+"\n"), 0o644))
		must(os.Symlink(p, filepath.Join(s.Block, "vda"+strconv.Itoa(i))))
	}
	must(os.MkdirAll(filepath.Join(dir, "sys/devices/sr0"), 0o755))
	must(os.Symlink(filepath.Join(dir, "sys/devices/sr0"), filepath.Join(s.Block, "sr0")))
	must(os.WriteFile(filepath.Join(s.Dev, "sr0"), nil, 0o644))
	must(os.MkdirAll(filepath.Join(dir, "sys/devices/ram0"), 0o755))
	must(os.Symlink(filepath.Join(dir, "sys/devices/ram0"), filepath.Join(s.Block, "ram0")))

	img := filepath.Join(s.Dev, "vda")
	f, err := os.Create(img)
	must(err)
	must(f.Truncate(64 << 20))
	f.Close()
	out, err := exec.Command("sgdisk",
		"-n", "1:2048:+8M", "-c", "1:kiln-esp", "-t", "1:EF00",
		"-n", "2:0:+8M", "-c", "2:kiln-root-a",
		"-n", "3:0:+8M", "-c", "3:kiln-root-b", "-u", "3:"+rootB,
		"-n", "4:0:+4M", "-c", "4:kiln-data", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	return s
}

func TestDisksAndDescribe(t *testing.T) {
	s := fakeSys(t)
	disks, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Describe(disks), "sr0 vda(vda1,vda2,vda3,vda4)"; got != want {
		t.Errorf("Describe(Disks()) = %q, want %q", got, want)
	}
	if got := Describe(nil); got != "none" {
		t.Errorf("Describe(nil) = %q, want none", got)
	}
}

func TestFindPartition(t *testing.T) {
	s := fakeSys(t)
	f, err := s.FindPartition(func(e gpt.Entry) bool { return strings.EqualFold(e.UUID, rootB) })
	if err != nil {
		t.Fatalf("FindPartition(PARTUUID=%s): %v", rootB, err)
	}
	if f.Disk != "vda" || f.Part != "vda3" || f.Entry.Name != "kiln-root-b" {
		t.Errorf("FindPartition(PARTUUID=%s) = disk %s part %s name %s, want vda vda3 kiln-root-b", rootB, f.Disk, f.Part, f.Entry.Name)
	}
	_, err = s.FindPartition(func(e gpt.Entry) bool { return e.UUID == "NOPE" })
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "vda(vda1,vda2,vda3,vda4)") {
		t.Errorf("FindPartition(missing) error = %v, want ErrNotFound naming the disks seen", err)
	}
	if f, err := s.FindOnDisk("vda", func(e gpt.Entry) bool { return e.Name == "kiln-data" }); err != nil || f.Part != "vda4" {
		t.Errorf("FindOnDisk(vda, kiln-data) = %+v, %v; want vda4", f, err)
	}
}

func TestDiskOfAndNameOfDev(t *testing.T) {
	s := fakeSys(t)
	if d, err := s.DiskOf("vda2"); err != nil || d != "vda" {
		t.Errorf("DiskOf(vda2) = %q, %v; want vda", d, err)
	}
	if _, err := s.DiskOf("vda"); err == nil {
		t.Error("DiskOf(vda) = nil error, want 'not a partition'")
	}
	if n, err := s.NameOfDev(254, 2); err != nil || n != "vda2" {
		t.Errorf("NameOfDev(254:2) = %q, %v; want vda2", n, err)
	}
	if n, err := s.EnsureNode("vda"); err != nil || n != filepath.Join(s.Dev, "vda") {
		t.Errorf("EnsureNode(vda) = %q, %v", n, err)
	}
}
