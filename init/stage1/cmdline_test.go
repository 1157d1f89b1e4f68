package stage1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	const uuid = "8d3f1c2a-5b6e-4f70-8a9b-0c1d2e3f4a5b"
	tests := []struct {
		in      string
		want    Cmdline
		wantErr string
	}{
		{
			in: "BOOT_IMAGE=/kiln/a/vmlinuz root=PARTUUID=" + uuid + " kiln.slot=a ro console=tty0 console=ttyS0,115200 panic=10\n",
			want: Cmdline{RootPARTUUID: strings.ToUpper(uuid), Slot: "a", Init: "/sbin/init", Params: map[string]string{
				"BOOT_IMAGE": "/kiln/a/vmlinuz", "root": "PARTUUID=" + uuid, "kiln.slot": "a", "ro": "", "console": "ttyS0,115200", "panic": "10",
			}},
		},
		{
			in: `root=PARTUUID=` + uuid + ` kiln.slot=b dyndbg="file x.c +p" init=/bin/sh -- single`,
			want: Cmdline{RootPARTUUID: strings.ToUpper(uuid), Slot: "b", Init: "/bin/sh", Params: map[string]string{
				"root": "PARTUUID=" + uuid, "kiln.slot": "b", "dyndbg": "file x.c +p", "init": "/bin/sh",
			}},
		},
		{
			in: "kiln.live=" + uuid + " ro console=ttyS0,115200",
			want: Cmdline{Live: strings.ToUpper(uuid), Init: "/sbin/init", Params: map[string]string{
				"kiln.live": uuid, "ro": "", "console": "ttyS0,115200",
			}},
		},
		{in: "kiln.live=nope", wantErr: "kiln.live=nope is not a live ISO ID"},
		{in: "ro quiet", wantErr: "no root= parameter"},
		{in: "root=/dev/vda2", wantErr: "root=/dev/vda2 is not PARTUUID"},
		{in: "root=PARTUUID=xyz", wantErr: "is not PARTUUID=<uuid>"},
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
	f.Add(`root=PARTUUID=8d3f1c2a-5b6e-4f70-8a9b-0c1d2e3f4a5b kiln.slot=a "x y"`)
	f.Fuzz(func(t *testing.T, s string) { ParseCmdline(s) })
}
