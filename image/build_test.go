package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"kiln.dev/kiln/image/hosttool"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/partitions"
)

// testBinary returns $env when set, else builds pkg into dir.
func testBinary(t *testing.T, env, pkg, dir string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestBuildImage builds the image twice and checks the bytes match and the real
// tools accept the partition table, the ESP and both roots.
func TestBuildImage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds two full images (-short)")
	}
	for _, tool := range []hosttool.Tool{hosttool.Mksquashfs, hosttool.Unsquashfs, hosttool.Sgdisk, hosttool.FsckVfat, hosttool.QemuImg} {
		if _, err := tool.Path(); err != nil {
			t.Skipf("skipping: %v", err)
		}
	}
	lock := cachedLock(t)
	bins := t.TempDir()
	// Any static binary serves as /init here; stage 1 is tested by booting.
	hello := testBinary(t, "KILN_STAGE1", "kiln.dev/kiln/image/hello", bins)
	kiln := testBinary(t, "KILN_BIN", "kiln.dev/kiln/cmd/kiln", bins)
	agent := testBinary(t, "KILN_AGENT", "kiln.dev/kiln/cmd/kiln-agent", bins)
	spec := Spec{
		Lock: lock, CacheDir: cacheDir(), Kiln: kiln, Stage1: hello, Busybox: os.Getenv("KILN_BUSYBOX"), Agent: agent,
		ApplianceID: "kiln-test", Version: "test", Generation: 3,
	}
	ctx := context.Background()
	var sums, isoSums []string
	var imgs []string
	var firstVet []byte
	for i := range 2 {
		dir := t.TempDir()
		s := spec
		s.WorkDir = dir
		out := filepath.Join(dir, "kiln.img")
		res, err := Build(ctx, s, out)
		if err != nil {
			t.Fatalf("Build #%d: %v", i+1, err)
		}
		if res.Size != int64(partitions.ImageSize()) {
			t.Errorf("image size = %d, want %d", res.Size, partitions.ImageSize())
		}
		sums = append(sums, res.SHA256)
		imgs = append(imgs, out)
		isoPath := filepath.Join(dir, "kiln.iso")
		if err := WriteISO(ctx, s, res.Payloads, out, isoPath); err != nil {
			t.Fatalf("WriteISO #%d: %v", i+1, err)
		}
		isoSum, _, _ := HashFile(isoPath)
		isoSums = append(isoSums, isoSum)
		if i == 0 {
			checkISO(t, isoPath, s, res)
			checkISOInstall(t, isoPath, res)
		}
		if i == 0 {
			firstVet = res.Payloads.VetInitrd
			payloads := filepath.Join(dir, "payloads")
			if err := WritePayloads(res.Payloads, payloads); err != nil {
				t.Fatal(err)
			}
			checkPayloadsInImage(t, out, payloads)
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds from the same inputs: sha256 %s and %s, want identical", sums[0], sums[1])
	}
	if isoSums[0] != isoSums[1] {
		t.Errorf("two live ISOs from the same inputs: sha256 %s and %s, want identical", isoSums[0], isoSums[1])
	}
	img := imgs[0]

	if out, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	out, err := exec.Command("sgdisk", "-i", "2", img).CombinedOutput()
	if want := partitions.PartUUID("kiln-test", partitions.RoleRootA); err != nil || !strings.Contains(string(out), want) {
		t.Errorf("sgdisk -i 2: root-a unique GUID is not %s: %v\n%s", want, err, out)
	}

	espPart, _ := partitions.ByRole(partitions.RoleESP)
	espImg := filepath.Join(t.TempDir(), "esp.img")
	extract(t, img, espImg, espPart)
	out, err = exec.Command("fsck.vfat", "-n", "-l", espImg).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.vfat -n on the ESP: %v\n%s", err, out)
	}
	for _, want := range []string{"/EFI/BOOT/BOOTX64.EFI", "/loader/loader.conf", "/loader/entries/kiln-3.conf",
		"/grub/grub.cfg", "/grub/grubenv", "/kiln/a/grub.cfg",
		"/kiln/a/vmlinuz", "/kiln/a/initrd", "/kiln/b/vmlinuz", "/kiln/b/initrd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ESP lacks %s:\n%s", want, out)
		}
	}

	for _, role := range []partitions.Role{partitions.RoleRootA, partitions.RoleRootB} {
		p, _ := partitions.ByRole(role)
		out, err := exec.Command("unsquashfs", "-o", strconv.FormatUint(p.Start, 10), "-l", img).CombinedOutput()
		if err != nil {
			t.Errorf("unsquashfs -l %s: %v\n%s", role, err, out)
			continue
		}
		for _, want := range []string{"/sbin/kiln", "/sbin/init", "/sbin/modprobe", "/etc/kiln/kiln.yaml",
			"/lib/modules/", "/modules.dep", "/usr/share/kiln/ipxe/ipxe.efi", "/sbin/mke2fs", "/lib64/ld-linux-x86-64.so.2",
			VetDir + "/" + VetKernel, VetDir + "/" + VetInitrd} {
			if !strings.Contains(string(out), want) {
				t.Errorf("root %s lacks %s", role, want)
			}
		}
	}

	// The root carries the vetting initrd the build made (httpboot serves it).
	rootA, _ := partitions.ByRole(partitions.RoleRootA)
	out, err = exec.Command("unsquashfs", "-o", strconv.FormatUint(rootA.Start, 10), "-cat", img, VetDir+"/"+VetInitrd).Output()
	if err != nil || len(firstVet) == 0 || !bytes.Equal(out, firstVet) {
		t.Errorf("unsquashfs -cat %s/%s: %d bytes (%v), want the build's %d-byte vetting initrd", VetDir, VetInitrd, len(out), err, len(firstVet))
	}

	checkBIOSBoot(t, img)

	data, _ := partitions.ByRole(partitions.RoleData)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 1<<20)
	if _, err := f.ReadAt(head, int64(data.Start)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, make([]byte, len(head))) {
		t.Error("data partition is not blank: PID 1 must find no filesystem signature on a fresh image")
	}

	q1, q2 := filepath.Join(t.TempDir(), "a.qcow2"), filepath.Join(t.TempDir(), "b.qcow2")
	for i, q := range []string{q1, q2} {
		if err := ConvertQcow2(ctx, imgs[i], q); err != nil {
			t.Fatal(err)
		}
	}
	s1, _, _ := HashFile(q1)
	s2, _, _ := HashFile(q2)
	if s1 != s2 {
		t.Errorf("qcow2 of identical images: %s and %s, want identical", s1, s2)
	}
	checkFormats(t, imgs)
}

// checkFormats converts both builds' images to every VM format: the copies are
// byte-identical and qemu-img checks each (the OVA's disk is checked in
// image/vmdisk, which also reads every format back to the raw bytes).
func checkFormats(t *testing.T, imgs []string) {
	t.Helper()
	for _, f := range Formats()[1:] {
		var sums []string
		for i, img := range imgs {
			out := filepath.Join(t.TempDir(), "kiln."+string(f))
			if err := Convert(context.Background(), img, out, f, ConvertOptions{}); err != nil {
				t.Fatalf("Convert(%s) #%d: %v", f, i+1, err)
			}
			sum, _, _ := HashFile(out)
			sums = append(sums, sum)
			if f == FormatOVA {
				continue
			}
			if out, err := exec.Command("qemu-img", "check", "-f", string(f), out).CombinedOutput(); err != nil {
				t.Errorf("qemu-img check %s: %v\n%s", f, err, out)
			}
		}
		if sums[0] != sums[1] {
			t.Errorf("%s of identical images: %s and %s, want identical", f, sums[0], sums[1])
		}
	}
}

// checkBIOSBoot checks GRUB's boot code in the MBR points at the core image in
// the BIOS boot partition, the protective partition table survived, and the core
// image's blocklist covers the rest of it (SeaBIOS boots it in qemu/biostest).
func checkBIOSBoot(t *testing.T, img string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	bios, _ := partitions.ByRole(partitions.RoleBIOS)
	lba := bios.Start / partitions.SectorSize
	if got := binary.LittleEndian.Uint64(mbr[grubKernelSector:]); got != lba {
		t.Errorf("MBR boot code loads the core image from LBA %d, want %d", got, lba)
	}
	if mbr[450] != 0xEE || mbr[510] != 0x55 || mbr[511] != 0xAA || mbr[grubDriveCheck] != 0x90 {
		t.Errorf("MBR: type %#x, signature %x, drive check %#x: want the protective 0xEE entry, 55aa, NOPs", mbr[450], mbr[510:], mbr[grubDriveCheck])
	}
	core := make([]byte, 512)
	f.ReadAt(core, int64(bios.Start))
	if got := binary.LittleEndian.Uint64(core[grubBlocklist:]); got != lba+1 {
		t.Errorf("core image blocklist starts at LBA %d, want %d", got, lba+1)
	}
	if n := binary.LittleEndian.Uint16(core[grubBlocklist+8:]); n == 0 || uint64(n+1)*512 > bios.Size {
		t.Errorf("core image blocklist length %d sectors does not fit the %d-byte BIOS boot partition", n, bios.Size)
	}
}

// checkPayloadsInImage checks the payload root squashfs is what root-a holds.
func checkPayloadsInImage(t *testing.T, img, dir string) {
	t.Helper()
	root, err := os.ReadFile(filepath.Join(dir, PayloadRoot))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, _ := partitions.ByRole(partitions.RoleRootA)
	got := make([]byte, len(root))
	if _, err := f.ReadAt(got, int64(p.Start)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, root) {
		t.Error("root-a does not start with the payload root.squashfs")
	}
	// Both slots hold the squashfs and its hash tree, matching root.verity.
	b, err := os.ReadFile(filepath.Join(dir, PayloadRootVerity))
	if err != nil {
		t.Fatal(err)
	}
	vp, err := verity.ParseParams(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("payload %s: %v", PayloadRootVerity, err)
	}
	if vp.Size() != int64(len(root)) {
		t.Errorf("root.verity describes %d bytes, the root payload has %d", vp.Size(), len(root))
	}
	for _, role := range []partitions.Role{partitions.RoleRootA, partitions.RoleRootB} {
		p, _ := partitions.ByRole(role)
		if err := verity.Check(io.NewSectionReader(f, int64(p.Start), int64(p.Size)), vp); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	}
	for _, name := range []string{PayloadKernel, PayloadInitrd} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("payload %s missing or empty: %v", name, err)
		}
	}
}

func extract(t *testing.T, img, out string, p partitions.Partition) {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(in, int64(p.Start), int64(p.Size))); err != nil {
		t.Fatal(err)
	}
}
