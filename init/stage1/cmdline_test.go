package stage1

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/verity"
)

func TestParseCmdline(t *testing.T) {
	const uuid = "8d3f1c2a-5b6e-4f70-8a9b-0c1d2e3f4a5b"
	root := strings.Repeat("0f", 32)
	vp := verity.Params{DataBlocks: 4000, RootHash: bytes.Repeat([]byte{0x0f}, 32), Salt: []byte{1, 2}}
	vv := " kiln.verity=" + root + ":4000:0102"
	tests := []struct {
		in      string
		want    Cmdline
		wantErr string
	}{
		{
			in: "BOOT_IMAGE=/kiln/a/vmlinuz root=PARTUUID=" + uuid + " kiln.slot=a" + vv + " ro console=tty0 console=ttyS0,115200 panic=10\n",
			want: Cmdline{RootPARTUUID: strings.ToUpper(uuid), Slot: "a", Verity: vp, Init: "/sbin/init", Params: map[string]string{
				"BOOT_IMAGE": "/kiln/a/vmlinuz", "root": "PARTUUID=" + uuid, "kiln.slot": "a", "ro": "", "console": "ttyS0,115200", "panic": "10",
				"kiln.verity": root + ":4000:0102",
			}},
		},
		{
			in: `root=PARTUUID=` + uuid + ` kiln.slot=b dyndbg="file x.c +p" init=/bin/sh` + vv + ` -- single`,
			want: Cmdline{RootPARTUUID: strings.ToUpper(uuid), Slot: "b", Verity: vp, Init: "/bin/sh", Params: map[string]string{
				"root": "PARTUUID=" + uuid, "kiln.slot": "b", "dyndbg": "file x.c +p", "init": "/bin/sh", "kiln.verity": root + ":4000:0102",
			}},
		},
		{
			in: "kiln.live=" + uuid + vv + " ro console=ttyS0,115200",
			want: Cmdline{Live: strings.ToUpper(uuid), Verity: vp, Init: "/sbin/init", Params: map[string]string{
				"kiln.live": uuid, "ro": "", "console": "ttyS0,115200", "kiln.verity": root + ":4000:0102",
			}},
		},
		{in: "kiln.live=nope" + vv, wantErr: "kiln.live=nope is not a live ISO ID"},
		{in: "kiln.live=" + uuid, wantErr: "no kiln.verity= parameter"},
		{in: "kiln.live=" + uuid + " kiln.verity=zz:1:-", wantErr: "write the ISO again"},
		{in: "ro quiet", wantErr: "no root= parameter"},
		{in: "root=/dev/vda2", wantErr: "root=/dev/vda2 is not PARTUUID"},
		{in: "root=PARTUUID=xyz", wantErr: "is not PARTUUID=<uuid>"},
		{in: "root=PARTUUID=" + uuid + " kiln.slot=a", wantErr: "no kiln.verity= parameter"},
		{in: "root=PARTUUID=" + uuid + " kiln.verity=" + root, wantErr: "malformed kiln.verity value"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseCmdline(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCmdline(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`root=PARTUUID=8d3f1c2a-5b6e-4f70-8a9b-0c1d2e3f4a5b kiln.slot=a "x y" kiln.verity=` + strings.Repeat("00", 32) + ":1:-")
	f.Fuzz(func(t *testing.T, s string) { ParseCmdline(s) })
}

func TestVerityTarget(t *testing.T) {
	p := verity.Params{DataBlocks: 1000, RootHash: bytes.Repeat([]byte{0xaa}, 32)}
	// 1000 data blocks need 8 + 1 hash blocks: 1009 blocks, 8072 sectors.
	got, err := VerityTarget(p, "254:2", 8072)
	if err != nil {
		t.Fatal(err)
	}
	want := "0 8000 verity 1 254:2 254:2 4096 4096 1000 1000 sha256 " + strings.Repeat("aa", 32) + " -"
	if got.String() != want {
		t.Errorf("VerityTarget() = %q, want %q", got, want)
	}
	if _, err := VerityTarget(p, "254:2", 8071); err == nil || !strings.Contains(err.Error(), "take 8072 sectors, but the partition has 8071") {
		t.Errorf("VerityTarget(too small partition) = %v, want an error naming both sizes", err)
	}
}
