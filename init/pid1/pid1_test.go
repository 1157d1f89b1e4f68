package pid1

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"kiln.dev/kiln/init/shutdown"
)

const mountinfo = `22 1 254:2 / / ro,relatime - squashfs /dev/vda2 ro
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755
24 22 0:21 / /proc rw - proc proc rw
30 22 254:4 / /data rw,noatime - ext4 /dev/vda4 rw
31 22 0:40 / /my\040dir rw - tmpfs tmpfs rw
32 30 0:41 / /data rw - tmpfs tmpfs rw
`

func TestFindMount(t *testing.T) {
	tests := []struct {
		target, dev string
		ok          bool
	}{
		{"/", "254:2", true},
		{"/dev", "0:5", true},
		{"/data", "0:41", true}, // the last mount is the visible one
		{"/my dir", "0:40", true},
		{"/boot/efi", "", false},
	}
	for _, tt := range tests {
		dev, ok := findMount(strings.NewReader(mountinfo), tt.target)
		if dev != tt.dev || ok != tt.ok {
			t.Errorf("findMount(%q) = %q, %v; want %q, %v", tt.target, dev, ok, tt.dev, tt.ok)
		}
	}
}

func TestSignalAction(t *testing.T) {
	tests := []struct {
		sig  syscall.Signal
		want shutdown.Action
		ok   bool
	}{
		{syscall.SIGTERM, shutdown.Reboot, true},
		{syscall.SIGINT, shutdown.Reboot, true}, // Ctrl-Alt-Del
		{syscall.SIGUSR2, shutdown.Poweroff, true},
		{syscall.SIGPWR, shutdown.Poweroff, true},
		{syscall.SIGHUP, 0, false},
	}
	for _, tt := range tests {
		got, ok := SignalAction(tt.sig)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SignalAction(%v) = %v, %v; want %v, %v", tt.sig, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	persistent := filepath.Join(dir, "data.yaml")
	builtin := filepath.Join(dir, "etc.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Neither exists: defaults, no error.
	c, from, err := LoadConfig(persistent, builtin)
	if err != nil || from != "" || c.Hostname != "kiln" {
		t.Errorf("LoadConfig(none) = %q from %q, %v; want defaults", c.Hostname, from, err)
	}
	write(builtin, "hostname: builtin\n")
	c, from, err = LoadConfig(persistent, builtin)
	if err != nil || from != builtin || c.Hostname != "builtin" {
		t.Errorf("LoadConfig(builtin) = %q from %q, %v", c.Hostname, from, err)
	}
	write(persistent, "hostname: site-a\n")
	c, from, err = LoadConfig(persistent, builtin)
	if err != nil || from != persistent || c.Hostname != "site-a" {
		t.Errorf("LoadConfig(persistent) = %q from %q, %v", c.Hostname, from, err)
	}
	// A broken persistent file falls back to the image's, saying so.
	write(persistent, "hostname: -bad-\n")
	c, from, err = LoadConfig(persistent, builtin)
	if from != builtin || c.Hostname != "builtin" || err == nil || !strings.Contains(err.Error(), "hostname") || !strings.Contains(err.Error(), "using "+builtin) {
		t.Errorf("LoadConfig(bad persistent) = %q from %q, %v; want the built-in one and an error naming the field", c.Hostname, from, err)
	}
	write(builtin, "nonsense: [\n")
	c, from, err = LoadConfig(persistent, builtin)
	if from != "" || c.Hostname != "kiln" || err == nil || !strings.Contains(err.Error(), "built-in defaults") {
		t.Errorf("LoadConfig(both bad) = %q from %q, %v; want defaults", c.Hostname, from, err)
	}
}

func TestControllerRequestsDoNotBlock(t *testing.T) {
	p := New(Options{Out: &strings.Builder{}})
	for i := 0; i < 10; i++ {
		p.Reboot(context.Background())
		p.Poweroff(context.Background())
	}
	if got := <-p.requests; got != shutdown.Reboot {
		t.Errorf("first request = %v, want reboot", got)
	}
}
