package shutdown

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeSys records every call; processes die after the signal in dieOn.
type fakeSys struct {
	calls  []string
	others int
	dieOn  syscall.Signal
	busy   map[string]bool
}

func (f *fakeSys) KillAll(sig syscall.Signal) error {
	f.calls = append(f.calls, "kill "+sig.String())
	if sig == f.dieOn || sig == syscall.SIGKILL {
		f.others = 0
	}
	return nil
}
func (f *fakeSys) Others() (int, error) { return f.others, nil }
func (f *fakeSys) Sync()                { f.calls = append(f.calls, "sync") }
func (f *fakeSys) Unmount(t string) error {
	f.calls = append(f.calls, "umount "+t)
	if f.busy[t] {
		return syscall.EBUSY
	}
	return nil
}
func (f *fakeSys) RemountReadOnly(t string) error {
	f.calls = append(f.calls, "remount-ro "+t)
	return nil
}
func (f *fakeSys) Halt(a Action) error {
	f.calls = append(f.calls, "halt "+a.String())
	return errors.New("fake kernel")
}

func TestOrderedShutdown(t *testing.T) {
	tests := []struct {
		name   string
		action Action
		sys    *fakeSys
		want   []string
	}{
		{
			name: "clean poweroff", action: Poweroff, sys: &fakeSys{},
			want: []string{"stop services", "sync", "umount /data", "umount /boot/efi", "sync", "disarm", "halt poweroff"},
		},
		{
			name: "orphans exit on SIGTERM", action: Reboot, sys: &fakeSys{others: 2, dieOn: syscall.SIGTERM},
			want: []string{"stop services", "kill terminated", "sync", "umount /data", "umount /boot/efi", "sync", "disarm", "halt reboot"},
		},
		{
			name: "stubborn process and busy /data", action: Reboot, sys: &fakeSys{others: 1, busy: map[string]bool{"/data": true}},
			want: []string{"stop services", "kill terminated", "kill killed", "sync", "umount /data", "remount-ro /data", "umount /boot/efi", "sync", "disarm", "halt reboot"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			p := Plan{
				Out: &out,
				StopServices: func(ctx context.Context) error {
					if _, ok := ctx.Deadline(); !ok {
						t.Error("StopServices got no deadline")
					}
					tt.sys.calls = append(tt.sys.calls, "stop services")
					return nil
				},
				Unmount: []string{"/data", "/boot/efi"},
				Disarm:  func() error { tt.sys.calls = append(tt.sys.calls, "disarm"); return nil },
				Sys:     tt.sys,
				Log:     slog.New(slog.DiscardHandler),
				Sleep:   func(time.Duration) {},
			}
			err := p.Run(context.Background(), tt.action)
			if err == nil || !strings.Contains(err.Error(), "fake kernel") {
				t.Errorf("Run = %v, want the halt failure", err)
			}
			if diff := cmp.Diff(tt.want, tt.sys.calls); diff != "" {
				t.Errorf("calls mismatch (-want +got):\n%s", diff)
			}
			marker := fmt.Sprintf("kiln-init: reached %s\n", tt.action)
			if !strings.HasSuffix(out.String(), marker) {
				t.Errorf("console = %q, want it to end with %q", out.String(), marker)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in    string
		state string
		ppid  int
	}{
		{"1 (init) S 0 1 1 0 -1", "S", 0},
		{"42 (a) b (c)) Z 1 42 42", "Z", 1},
		{"7 (kworker/0:1) I 2 0 0", "I", 2},
	}
	for _, tt := range tests {
		st, pp, ok := parseStat(tt.in)
		if !ok || st != tt.state || pp != tt.ppid {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d", tt.in, st, pp, ok, tt.state, tt.ppid)
		}
	}
}
