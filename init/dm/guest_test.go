package dm

// Tier 3g: the kernel's device-mapper in a guest booting kiln's kernel.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/qemu/guest"
)

// TestVerityInKernel lays out a partition image as the image build does
// (data, then the tree), attaches it to a loop device and opens it with
// CreateReadOnly: the kernel accepts the table, dmsetup reads back the same
// table veritysetup open would load, every byte reads back, and after one
// flipped byte the read fails with EIO and the status says corrupted.
func TestVerityInKernel(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"dm-verity", "loop"}}) {
		return
	}
	for _, tool := range []string{"losetup", "dmsetup", "veritysetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install util-linux dmsetup cryptsetup-bin)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	data := make([]byte, 1000*verity.BlockSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	os.WriteFile(img, data, 0o644)
	p, err := verity.Append(img)
	if err != nil {
		t.Fatal(err)
	}
	attach := func() string {
		out, err := exec.Command("losetup", "--find", "--show", "--read-only", img).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		loop := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
		return loop
	}
	loop := attach()
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	devNum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	target := Target{Length: p.Sectors(), Type: "verity", Params: p.TableParams(devNum)}

	c, err := Open(ControlPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dev, err := c.CreateReadOnly("kiln-test", "KILN-VERITY-test", []Target{target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(dev.Name)
	tbl, err := c.Table(dev.Name)
	if err != nil || len(tbl) != 1 {
		t.Fatalf("Table = %v, %v", tbl, err)
	}
	// veritysetup open of the same layout (through a second loop device:
	// it refuses one in use) loads the same table.
	loop2 := attach()
	f := strings.Fields(p.TableParams(loop2))
	vs, err := exec.Command("veritysetup", "open", "--no-superblock", "--hash=sha256", "--data-blocks="+f[5],
		fmt.Sprintf("--hash-offset=%d", p.DataBlocks*verity.BlockSize), "--salt="+f[9], loop2, "kiln-vs", loop2, f[8]).CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup open: %v\n%s", err, vs)
	}
	defer exec.Command("veritysetup", "close", "kiln-vs").Run()
	want, err := exec.Command("dmsetup", "table", "kiln-vs").Output()
	if err != nil {
		t.Fatal(err)
	}
	var st2 unix.Stat_t
	unix.Stat(loop2, &st2)
	wantOurs := strings.ReplaceAll(string(want), fmt.Sprintf("%d:%d", unix.Major(st2.Rdev), unix.Minor(st2.Rdev)), devNum)
	if got := tbl[0].String(); got != strings.TrimSpace(wantOurs) {
		t.Errorf("our table   %q\nveritysetup %q (its loop device renamed to ours)", got, strings.TrimSpace(wantOurs))
	}
	ours, err := exec.Command("dmsetup", "table", "kiln-test").Output()
	if err != nil || string(ours) != wantOurs {
		t.Errorf("dmsetup table kiln-test = %q, %v; want %q", ours, err, wantOurs)
	}

	node := filepath.Join("/dev", dev.Node())
	got, err := os.ReadFile(node)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading %s: %d bytes, %v; want the %d data bytes", node, len(got), err, len(data))
	}
	if s, err := c.Status(dev.Name); err != nil || len(s) != 1 || s[0].Params != "V" {
		t.Errorf("Status = %v, %v; want verity V", s, err)
	}

	// A second device over the image with one byte flipped refuses the block.
	data[500*verity.BlockSize+9] ^= 1
	fh, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt(data[500*verity.BlockSize:501*verity.BlockSize], 500*verity.BlockSize)
	fh.Close()
	bad, err := c.CreateReadOnly("kiln-bad", "", []Target{target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(bad.Name)
	bf, err := os.Open(filepath.Join("/dev", bad.Node()))
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if _, err := bf.ReadAt(make([]byte, verity.BlockSize), 10*verity.BlockSize); err != nil {
		t.Errorf("reading a good block of the tampered image: %v", err)
	}
	_, err = io.Copy(io.Discard, bf)
	if err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("reading the tampered image = %v, want EIO", err)
	}
	if s, err := c.Status(bad.Name); err != nil || len(s) != 1 || s[0].Params != "C" {
		t.Errorf("Status of the tampered device = %v, %v; want verity C", s, err)
	}
	if _, err := c.CreateReadOnly("kiln-test", "", []Target{target}); err == nil {
		t.Error("CreateReadOnly of an existing name succeeded")
	}
}
