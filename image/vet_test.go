package image

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	initkmod "kiln.dev/kiln/init/kmod"
)

// member is one entry of an initrd.
type member struct {
	mode uint64
	data []byte // file contents or link target
}

// readInitrd lists a gzip newc archive by path (without the leading /).
func readInitrd(t *testing.T, initrd []byte) (map[string]member, []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(initrd))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]member{}
	for _, r := range recs {
		var data []byte
		if r.ReaderAt != nil {
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
		}
		out[r.Name] = member{mode: r.Mode, data: data}
	}
	return out, raw
}

// TestVetInitrd builds the vetting live image's initrd from the pinned
// kernel and checks what the live image needs is in it: /init (the agent),
// the busybox with /bin/sh, every required module with its dependencies, and
// a modules.dep and modules.alias that the live image's modprobe (init/kmod)
// resolves. It builds it twice to check it is reproducible.
func TestVetInitrd(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: reads the whole kernel package (-short)")
	}
	k := testKernel(t)
	// Static stand-ins: hello as the agent, a copy of it as busybox.
	dir := t.TempDir()
	agent := testBinary(t, "", "kiln.dev/kiln/image/hello", dir)
	agentData, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	bb := filepath.Join(dir, "bb")
	bbData := append(slices.Clone(agentData), "busybox"...)
	if err := os.WriteFile(bb, bbData, 0o755); err != nil {
		t.Fatal(err)
	}
	mods, skipped, err := k.tree.Closure(vetModules, vetOptionalModules)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(skipped, "af_packet") || !k.tree.Builtin("af_packet") {
		t.Errorf("af_packet: skipped %v; want it built into Debian's kernel (DHCP needs packet sockets)", skipped)
	}
	s := Spec{Agent: agent, Busybox: bb, Version: "test"}
	initrd, err := vetInitrd(s, k, mods)
	if err != nil {
		t.Fatal(err)
	}
	again, err := vetInitrd(s, k, mods)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(initrd, again) {
		t.Error("two vetting initrds from the same inputs differ")
	}
	files, raw := readInitrd(t, initrd)
	t.Logf("vetting initrd: %d bytes gzip (%d raw), %d modules; not in this kernel or built in: %s",
		len(initrd), len(raw), len(mods), strings.Join(skipped, " "))

	if f := files["init"]; f.mode != cpio.S_IFREG|0o755 || !bytes.Equal(f.data, agentData) {
		t.Errorf("/init = mode %o, %d bytes; want the agent binary, 0755", f.mode, len(f.data))
	}
	for name, target := range map[string]string{"sbin/modprobe": "/init", "bin/sh": "gosh", "bin/gosh": "bb", "bin/ls": "bb",
		"etc/resolv.conf": "/run/resolv.conf"} {
		if f := files[name]; f.mode&cpio.S_IFMT != cpio.S_IFLNK || string(f.data) != target {
			t.Errorf("/%s = mode %o %q, want a link to %s", name, f.mode, f.data, target)
		}
	}
	if f := files["bin/bb"]; !bytes.Equal(f.data, bbData) {
		t.Errorf("/bin/bb = %d bytes, want the busybox", len(f.data))
	}
	if f := files["etc/passwd"]; !strings.HasPrefix(string(f.data), "root:x:0:0:root:/root:/bin/sh\n") {
		t.Errorf("/etc/passwd = %q, want root with /bin/sh", f.data)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "root"} {
		if files[d].mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("/%s is not a directory in the initrd", d)
		}
	}

	modDir := "lib/modules/" + k.release + "/"
	ix, err := initkmod.ParseIndex(bytes.NewReader(files[modDir+"modules.dep"].data), bytes.NewReader(files[modDir+"modules.alias"].data))
	if err != nil {
		t.Fatalf("the initrd's modules.dep/modules.alias do not parse: %v", err)
	}
	for _, m := range vetModules {
		if k.tree.Builtin(m) {
			continue
		}
		order, err := ix.LoadOrder(m)
		if err != nil {
			t.Errorf("modprobe %s in the live image: %v", m, err)
			continue
		}
		for _, dep := range order {
			p, ok := ix.Path(dep)
			if !ok {
				t.Errorf("%s needs %s, which modules.dep does not list", m, dep)
				continue
			}
			if f, ok := files[modDir+p]; !ok || len(f.data) == 0 {
				t.Errorf("%s needs %s (%s), which is not in the initrd", m, dep, p)
			}
		}
	}
	// Every module the index lists is in the archive (no dangling lines).
	for _, m := range ix.Modules() {
		if p, _ := ix.Path(m); files[modDir+p].data == nil {
			t.Errorf("modules.dep lists %s at %s, which is not in the initrd", m, p)
		}
	}
	// Coldplug finds drivers by modalias: a virtio-net PCI function and an
	// Intel 82574L (e1000e) resolve to their drivers.
	for alias, want := range map[string]string{
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": "virtio_pci",
		"virtio:d00000001v00001AF4":                             "virtio_net",
		"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00": "e1000e",
	} {
		if got := ix.Resolve(alias); !slices.Contains(got, want) {
			t.Errorf("modalias %s resolves to %v, want %s", alias, got, want)
		}
	}

	// GNU cpio reads the archive and sees the same members.
	if cpioBin, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command(cpioBin, "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -it: %v", err)
		}
		listed := strings.Fields(string(out))
		var want []string
		for name := range files {
			want = append(want, name)
		}
		slices.Sort(listed)
		slices.Sort(want)
		if diff := cmp.Diff(want, listed); diff != "" {
			t.Errorf("cpio -it members (-ours +cpio's):\n%s", diff)
		}
	}
}

// TestVetRejectsDynamic: a dynamically linked agent (CGO on) would not run
// in the initrd; the build says so instead of the kernel's "error -2".
func TestVetRejectsDynamic(t *testing.T) {
	dyn := "/bin/true"
	data, err := os.ReadFile(dyn)
	if err != nil {
		t.Skipf("no %s: %v", dyn, err)
	}
	err = checkStatic("--agent", dyn, data)
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("checkStatic(%s) = %v, want it refused, naming CGO_ENABLED=0", dyn, err)
	}
	if err := checkStatic("--agent", "x", []byte("#!/bin/sh\n")); err == nil {
		t.Error("checkStatic(a script) = nil, want an error")
	}
	hello := testBinary(t, "", "kiln.dev/kiln/image/hello", t.TempDir())
	data, err = os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic("--agent", hello, data); err != nil {
		t.Errorf("checkStatic(static hello) = %v, want nil", err)
	}
}
