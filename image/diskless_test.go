package image

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	initkmod "kiln.dev/kiln/init/kmod"
)

// TestDisklessInitrd builds the diskless client's initrd from the pinned
// kernel and checks it holds /init (the client), the modprobe link, the
// mount points, and the NFS client, overlayfs and NIC drivers with a module
// index the client's loader (init/kmod) resolves; twice, for reproducibility.
func TestDisklessInitrd(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: reads the whole kernel package (-short)")
	}
	k := testKernel(t)
	bin := testBinary(t, "", "kiln.dev/kiln/image/hello", t.TempDir()) // a static stand-in
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	req, opt := disklessModuleLists()
	mods, skipped, err := k.tree.Closure(req, opt)
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{Diskless: bin}
	initrd, err := disklessInitrd(s, k, mods)
	if err != nil {
		t.Fatal(err)
	}
	again, err := disklessInitrd(s, k, mods)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(initrd, again) {
		t.Error("two diskless initrds from the same inputs differ")
	}
	files, raw := readInitrd(t, initrd)
	t.Logf("diskless initrd: %d bytes gzip (%d raw), %d modules; not in this kernel or built in: %s",
		len(initrd), len(raw), len(mods), strings.Join(skipped, " "))
	if f := files["init"]; f.mode != cpio.S_IFREG|0o755 || !bytes.Equal(f.data, binData) {
		t.Errorf("/init = mode %o, %d bytes; want the diskless client, 0755", f.mode, len(f.data))
	}
	if f := files["sbin/modprobe"]; f.mode&cpio.S_IFMT != cpio.S_IFLNK || string(f.data) != "/init" {
		t.Errorf("/sbin/modprobe = mode %o %q, want a link to /init", f.mode, f.data)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "newroot"} {
		if files[d].mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("/%s is not a directory in the initrd", d)
		}
	}
	modDir := "lib/modules/" + k.release + "/"
	ix, err := initkmod.ParseIndex(bytes.NewReader(files[modDir+"modules.dep"].data), bytes.NewReader(files[modDir+"modules.alias"].data))
	if err != nil {
		t.Fatalf("the initrd's modules.dep/modules.alias do not parse: %v", err)
	}
	for _, m := range append([]string{"nfsv4", "overlay", "virtio_net"}, req...) {
		if k.tree.Builtin(m) {
			continue
		}
		order, err := ix.LoadOrder(m)
		if err != nil {
			t.Errorf("modprobe %s in the diskless initrd: %v", m, err)
			continue
		}
		for _, dep := range order {
			if p, ok := ix.Path(dep); !ok || files[modDir+p].data == nil {
				t.Errorf("%s needs %s, which the initrd lacks", m, dep)
			}
		}
	}
	// The kernel asks modprobe for these when the client mounts (nfs
	// registers the nfs4 file system type and loads nfsv4 itself).
	for alias, want := range map[string]string{"fs-nfs4": "nfs", "fs-overlay": "overlay"} {
		if got := ix.Resolve(alias); len(got) != 1 || got[0] != want {
			t.Errorf("the initrd resolves the kernel's request for %s to %v, want [%s]", alias, got, want)
		}
	}

	s.Diskless = "/nonexistent/kiln-diskless"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--diskless /nonexistent/kiln-diskless: not a readable file") {
		t.Errorf("Validate with a missing --diskless = %v", err)
	}
}
