package diskless

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckInit(t *testing.T) {
	self, err := os.Executable() // the test binary: an x86-64 ELF on the build hosts
	if err != nil {
		t.Fatal(err)
	}
	elfBytes, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	arm := append([]byte(nil), elfBytes[:64]...)
	arm[18], arm[19] = 0xb7, 0x00 // e_machine = EM_AARCH64
	type file struct {
		data []byte
		mode os.FileMode
		link string
	}
	tests := []struct {
		name    string
		files   map[string]file
		wantErr string
	}{
		{"ELF", map[string]file{"sbin/init": {data: elfBytes, mode: 0o755}}, ""},
		{"script", map[string]file{"sbin/init": {data: []byte("#!/bin/sh\nexec /bin/app\n"), mode: 0o755}}, ""},
		{"absolute link, resolved inside the root", map[string]file{
			"lib/systemd/systemd": {data: elfBytes, mode: 0o755},
			"sbin/init":           {link: "/lib/systemd/systemd"}}, ""},
		{"relative link through a linked directory", map[string]file{
			"usr/bin/app": {data: elfBytes, mode: 0o755},
			"bin":         {link: "usr/bin"},
			"sbin/init":   {link: "../bin/app"}}, ""},
		{"link climbing out stays inside", map[string]file{
			"app":       {data: elfBytes, mode: 0o755},
			"sbin/init": {link: "../../../../app"}}, ""},
		{"missing", map[string]file{"etc/hostname": {data: []byte("x\n"), mode: 0o644}}, "/sbin/init: lstat"},
		{"dangling link", map[string]file{"sbin/init": {link: "/lib/systemd/systemd"}}, "no such file"},
		{"link loop", map[string]file{"sbin/init": {link: "init"}}, "more than 40 symbolic links"},
		{"not executable", map[string]file{"sbin/init": {data: elfBytes, mode: 0o644}}, "is not executable"},
		{"directory", map[string]file{"sbin/init/x": {data: []byte("x"), mode: 0o755}}, "is not a regular file"},
		{"text", map[string]file{"sbin/init": {data: []byte("hello\n"), mode: 0o755}}, "neither an ELF program nor a #! script"},
		{"empty", map[string]file{"sbin/init": {data: nil, mode: 0o755}}, "neither an ELF"},
		{"truncated ELF", map[string]file{"sbin/init": {data: elfBytes[:10], mode: 0o755}}, "truncated ELF"},
		{"arm64", map[string]file{"sbin/init": {data: arm, mode: 0o755}}, "not x86-64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, f := range tt.files {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if f.link != "" {
					err = os.Symlink(f.link, full)
				} else {
					err = os.WriteFile(full, f.data, f.mode)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			err := CheckInit(root, "/sbin/init")
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("CheckInit = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNoInit) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckInit = %v, want ErrNoInit containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBootNICs(t *testing.T) {
	sys := t.TempDir()
	for name, mac := range map[string]string{"eth0": "52:54:00:00:00:01", "eth1": "52:54:00:00:00:02"} {
		dir := filepath.Join(sys, name)
		for _, d := range []string{dir, filepath.Join(dir, "device")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(dir, "type"), []byte("1\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "address"), []byte(mac+"\n"), 0o644)
	}
	c, err := ParseCmdline("kiln.nfsroot=10.0.0.1:/r kiln.mac=52:54:00:00:00:02")
	if err != nil {
		t.Fatal(err)
	}
	if got := bootNICs(sys, c.MAC); len(got) != 1 || got[0] != "eth1" {
		t.Errorf("bootNICs(%s) = %v, want [eth1]", c.MAC, got)
	}
	if got := bootNICs(sys, nil); len(got) != 2 {
		t.Errorf("bootNICs(nil) = %v, want both", got)
	}
	c, _ = ParseCmdline("kiln.nfsroot=10.0.0.1:/r kiln.mac=52:54:00:00:00:03")
	if got := bootNICs(sys, c.MAC); len(got) != 0 {
		t.Errorf("bootNICs(%s) = %v, want none", c.MAC, got)
	}
}
