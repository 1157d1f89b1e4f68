package kmod

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// elfWithModinfo builds a minimal ELF64 relocatable object holding a .modinfo section.
func elfWithModinfo(modinfo []byte) []byte {
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(len(modinfo))
	shOff := strOff + uint64(len(shstr))
	var b bytes.Buffer
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}
	b.Write(ident[:])
	le := binary.LittleEndian
	w := func(v any) { binary.Write(&b, le, v) }
	w(uint16(1))  // ET_REL
	w(uint16(62)) // EM_X86_64
	w(uint32(1))
	w(uint64(0)) // entry
	w(uint64(0)) // phoff
	w(shOff)
	w(uint32(0))
	w(uint16(ehsize))
	w(uint16(0))
	w(uint16(0))
	w(uint16(shentsize))
	w(uint16(3)) // shnum
	w(uint16(2)) // shstrndx
	b.Write(modinfo)
	b.Write(shstr)
	sh := func(name, typ uint32, off, size uint64) {
		w(name)
		w(typ)
		w(uint64(0)) // flags
		w(uint64(0)) // addr
		w(off)
		w(size)
		w(uint32(0))
		w(uint32(0))
		w(uint64(1))
		w(uint64(0))
	}
	sh(0, 0, 0, 0)
	sh(1, 1, modOff, uint64(len(modinfo))) // .modinfo, PROGBITS
	sh(10, 3, strOff, uint64(len(shstr)))  // .shstrtab, STRTAB
	return b.Bytes()
}

func TestParseModinfo(t *testing.T) {
	raw := []byte("alias=fs-ext4\x00softdep=pre: crypto-crc32c\x00parm=x:desc\x00depends=jbd2,mbcache,crc16\x00" +
		"alias=ext3\x00name=ext4\x00vermagic=6.1.0\x00\x00\x00")
	got, err := ParseModinfo(bytes.NewReader(elfWithModinfo(raw)))
	if err != nil {
		t.Fatalf("ParseModinfo: %v", err)
	}
	want := Info{Name: "ext4", Depends: []string{"jbd2", "mbcache", "crc16"}, Aliases: []string{"fs-ext4", "ext3"},
		Softdep: []string{"pre: crypto-crc32c"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseModinfo mismatch (-want +got):\n%s", diff)
	}
}

func TestParseModinfoRejects(t *testing.T) {
	if _, err := ParseModinfo(bytes.NewReader([]byte("not an elf"))); err == nil {
		t.Error("ParseModinfo(garbage) = nil error, want error")
	}
}

func TestParseModinfoNormalizes(t *testing.T) {
	got := parseModinfoSection([]byte("name=usb-storage\x00depends=usb-common,scsi_mod,\x00"))
	want := Info{Name: "usb_storage", Depends: []string{"usb_common", "scsi_mod"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseModinfoSection mismatch (-want +got):\n%s", diff)
	}
}

// fakeTree is a small kernel: ext4 with deps and a crc32c softdep served by an alias.
func fakeTree() *Tree {
	mods := []Module{
		{Path: "kernel/fs/ext4/ext4.ko", Info: Info{Name: "ext4", Depends: []string{"jbd2", "mbcache", "crc16"},
			Aliases: []string{"fs-ext4"}, Softdep: []string{"pre: crypto-crc32c"}}},
		{Path: "kernel/fs/jbd2/jbd2.ko", Info: Info{Name: "jbd2", Depends: []string{"crc16"}}},
		{Path: "kernel/fs/mbcache.ko", Info: Info{Name: "mbcache"}},
		{Path: "kernel/lib/crc16.ko", Info: Info{Name: "crc16"}},
		{Path: "kernel/crypto/crc32c_generic.ko", Info: Info{Name: "crc32c_generic", Aliases: []string{"crypto-crc32c", "crc32c"}}},
		{Path: "kernel/arch/x86/crypto/crc32c-intel.ko", Info: Info{Aliases: []string{"crypto-crc32c", "cpu:type:x86,ven*fam*mod*:feature:*0094*"}}},
		{Path: "kernel/drivers/usb/storage/usb-storage.ko", Info: Info{Name: "usb_storage", Depends: []string{"usb_common"}}},
		{Path: "kernel/drivers/usb/common/usb-common.ko", Info: Info{Name: "usb_common"}},
		{Path: "kernel/drivers/unused.ko", Info: Info{Name: "unused"}},
	}
	return NewTree(mods, []string{"kernel/drivers/block/loop.ko", ""})
}

func TestClosure(t *testing.T) {
	for _, tc := range []struct {
		name        string
		req, opt    []string
		wantPaths   []string
		wantSkipped []string
		wantErr     error
	}{
		{
			name: "ext4 with deps and softdep alias",
			req:  []string{"ext4"},
			wantPaths: []string{"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko",
				"kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko"},
		},
		{
			name:        "dash spelling and builtin",
			req:         []string{"usb-storage", "loop"},
			wantPaths:   []string{"kernel/drivers/usb/common/usb-common.ko", "kernel/drivers/usb/storage/usb-storage.ko"},
			wantSkipped: []string{"loop"},
		},
		{
			name:        "missing optional",
			opt:         []string{"nft_counter", "mbcache"},
			wantPaths:   []string{"kernel/fs/mbcache.ko"},
			wantSkipped: []string{"nft_counter"},
		},
		{name: "missing required", req: []string{"nosuch"}, wantErr: ErrUnknownModule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods, skipped, err := fakeTree().Closure(tc.req, tc.opt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Closure(%v, %v) error = %v, want %v", tc.req, tc.opt, err, tc.wantErr)
			}
			var paths []string
			for _, m := range mods {
				paths = append(paths, m.Path)
			}
			if diff := cmp.Diff(tc.wantPaths, paths); diff != "" {
				t.Errorf("Closure(%v, %v) paths mismatch (-want +got):\n%s", tc.req, tc.opt, diff)
			}
			if diff := cmp.Diff(tc.wantSkipped, skipped); diff != "" {
				t.Errorf("Closure(%v, %v) skipped mismatch (-want +got):\n%s", tc.req, tc.opt, diff)
			}
		})
	}
}

func TestClosureMissingDependency(t *testing.T) {
	tr := NewTree([]Module{{Path: "kernel/a.ko", Info: Info{Name: "a", Depends: []string{"b"}}}}, nil)
	if _, _, err := tr.Closure([]string{"a"}, nil); !errors.Is(err, ErrUnknownModule) {
		t.Errorf("Closure(a→missing b) error = %v, want ErrUnknownModule", err)
	}
}

func TestFilesGolden(t *testing.T) {
	mods, _, err := fakeTree().Closure([]string{"ext4", "usb-storage"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := Files(mods)
	if err != nil {
		t.Fatal(err)
	}
	files["modules.order"] = FilterOrder([]byte("kernel/fs/ext4/ext4.ko\nkernel/drivers/unused.ko\nkernel/lib/crc16.ko\n"), mods)
	for name, got := range files {
		t.Run(name, func(t *testing.T) {
			golden := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
			}
		})
	}
}

func TestDepCycle(t *testing.T) {
	mods := []*Module{
		{Path: "a.ko", Info: Info{Name: "a", Depends: []string{"b"}}},
		{Path: "b.ko", Info: Info{Name: "b", Depends: []string{"a"}}},
	}
	if _, err := Dep(mods); err == nil {
		t.Error("Dep(cycle) = nil error, want error")
	}
}

func FuzzParseModinfoSection(f *testing.F) {
	f.Add([]byte("name=x\x00depends=a,b\x00alias=y\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info := parseModinfoSection(data)
		for _, d := range info.Depends {
			if d == "" {
				t.Errorf("empty dependency parsed from %q", data)
			}
		}
	})
}
