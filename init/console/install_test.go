package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

// fakeInstaller has a blank disk vdb and the live medium vda.
type fakeInstaller struct {
	installed []string
	err       error
}

func (f *fakeInstaller) Targets(context.Context) ([]InstallTarget, error) {
	return []InstallTarget{
		{Name: "vda", Summary: "/dev/vda  2.0 GiB  virtio", Refused: "/dev/vda holds the running system (the running system's / is on dm-0)"},
		{Name: "vdb", Summary: "/dev/vdb  4.0 GiB  virtio"},
	}, nil
}

func (f *fakeInstaller) Install(_ context.Context, name string, out io.Writer) error {
	if f.err != nil {
		return f.err
	}
	f.installed = append(f.installed, name)
	fmt.Fprintf(out, "wrote 1.3 GiB to /dev/%s\n", name)
	return nil
}

func TestInstallItem(t *testing.T) {
	tests := []struct {
		name    string
		input   string // after "9"
		want    []string
		wantOut string
	}{
		{"typed twice", "vdb\nvdb\nn\n", []string{"vdb"}, "kiln is installed on vdb"},
		{"with /dev/", "/dev/vdb\n/dev/vdb\nn\n", []string{"vdb"}, "kiln is installed on vdb"},
		{"confirmation differs", "vdb\nvda\n", nil, `cancelled: that was not "vdb"; nothing was written.`},
		{"confirmation empty", "vdb\n\n", nil, "nothing was written"},
		{"the live medium", "vda\n", nil, "refusing vda: /dev/vda holds the running system"},
		{"not listed", "sdz\n", nil, `"sdz" is not one of the disks listed`},
		{"cancel", "\n", nil, "cancelled: nothing was written."},
		{"Ctrl-C", "vdb\nvd\x03", nil, "cancelled."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			c := f.console(t)
			in := &fakeInstaller{}
			c.Install = in
			got := run(t, c, "\n9\n"+tt.input)
			if strings.Join(in.installed, " ") != strings.Join(tt.want, " ") {
				t.Errorf("install with %q: installed %v, want %v", tt.input, in.installed, tt.want)
			}
			if !strings.Contains(got, tt.wantOut) {
				t.Errorf("install with %q: output lacks %q:\n%s", tt.input, tt.wantOut, got)
			}
			if !strings.Contains(got, "  9  install kiln to a disk\n") || !strings.Contains(got, "choice [1-9, q]: ") {
				t.Errorf("the live menu does not offer item 9:\n%s", got)
			}
		})
	}
}

func TestInstallItemOnlyWhenLive(t *testing.T) {
	f := newFakes()
	got := run(t, f.console(t), "\n9\n")
	if strings.Contains(got, "install kiln") || !strings.Contains(got, `"9" is not a menu choice: type a number from 1 to 8`) {
		t.Errorf("without an Installer the menu offers item 9:\n%s", got)
	}
}

func TestInstallFails(t *testing.T) {
	f := newFakes()
	c := f.console(t)
	c.Install = &fakeInstaller{err: errTest}
	got := run(t, c, "\n9\nvdb\nvdb\n")
	if want := "error: installing to vdb failed; the disk does not hold a bootable kiln (try again, or another disk): test failure"; !strings.Contains(got, want) {
		t.Errorf("output lacks %q:\n%s", want, got)
	}
	if f.power.reboots != 0 {
		t.Errorf("reboots after a failed install = %d, want 0", f.power.reboots)
	}
}
