package diskless

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestPlan(t *testing.T) {
	server, client := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.50")
	d := Dirs{Work: "/run/kiln-diskless", NewRoot: "/newroot"}
	a := Addrs{Root: server, Home: netip.MustParseAddr("10.0.0.2"), Client: client}
	base := func(tmpfs string) []Step {
		return []Step{
			{Mkdir: "/run/kiln-diskless/root"},
			{Mount: &Mount{Source: "10.0.0.1:/roots/contest/2", Target: "/run/kiln-diskless/root", FSType: "nfs4",
				Flags: unix.MS_RDONLY, Data: "vers=4.2,proto=tcp,hard,addr=10.0.0.1,clientaddr=10.0.0.50"}},
			{Mkdir: "/run/kiln-diskless/rw"},
			{Mount: &Mount{Source: "tmpfs", Target: "/run/kiln-diskless/rw", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: tmpfs}},
			{Mkdir: "/run/kiln-diskless/rw/upper"},
			{Mkdir: "/run/kiln-diskless/rw/work"},
			{Mkdir: "/newroot"},
			{Mount: &Mount{Source: "overlay", Target: "/newroot", FSType: "overlay",
				Data: "lowerdir=/run/kiln-diskless/root,upperdir=/run/kiln-diskless/rw/upper,workdir=/run/kiln-diskless/rw/work"}},
		}
	}
	kernelDirs := []Step{{Mkdir: "/newroot/dev"}, {Mkdir: "/newroot/proc"}, {Mkdir: "/newroot/sys"}}
	root := Export{Server: "pxe.lan", Path: "/roots/contest/2"}
	tests := []struct {
		name string
		c    Cmdline
		want []Step
	}{
		{"root only", Cmdline{Root: root}, append(base("mode=0755"), kernelDirs...)},
		{"root, home and a sized overlay", Cmdline{Root: root, Home: Export{Server: "files", Path: "/homes/lab"}, OverlaySize: "1G"},
			append(append(base("mode=0755,size=1G"),
				Step{Mkdir: "/newroot/home"},
				Step{Mount: &Mount{Source: "10.0.0.2:/homes/lab", Target: "/newroot/home", FSType: "nfs4",
					Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "vers=4.2,proto=tcp,hard,addr=10.0.0.2,clientaddr=10.0.0.50"}}),
				kernelDirs...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Plan(tt.c, a, d)); diff != "" {
				t.Errorf("Plan mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// recorder is a Mounter that records what it is asked and fails NFS mounts
// a given number of times.
type recorder struct {
	nfsFailures int
	err         error
	did         []string
}

func (r *recorder) Mkdir(p string) error { r.did = append(r.did, "mkdir "+p); return nil }

func (r *recorder) Mount(m Mount) error {
	if m.FSType == "nfs4" && r.nfsFailures > 0 {
		r.nfsFailures--
		return r.err
	}
	if m.FSType == "tmpfs" && r.err != nil && r.nfsFailures < 0 {
		return r.err
	}
	r.did = append(r.did, "mount "+m.Target)
	return nil
}

func TestApply(t *testing.T) {
	c := Cmdline{Root: Export{Server: "10.0.0.1", Path: "/roots/r/1"}}
	a := Addrs{Root: netip.MustParseAddr("10.0.0.1"), Client: netip.MustParseAddr("10.0.0.9")}
	steps := Plan(c, a, Dirs{Work: "/w", NewRoot: "/n"})

	t.Run("retries a refused NFS mount", func(t *testing.T) {
		r := &recorder{nfsFailures: 2, err: unix.EACCES}
		var reports []error
		if err := Apply(context.Background(), steps, r, time.Millisecond, func(err error) { reports = append(reports, err) }); err != nil {
			t.Fatalf("Apply = %v", err)
		}
		want := []string{"mkdir /w/root", "mount /w/root", "mkdir /w/rw", "mount /w/rw", "mkdir /w/rw/upper", "mkdir /w/rw/work",
			"mkdir /n", "mount /n", "mkdir /n/dev", "mkdir /n/proc", "mkdir /n/sys"}
		if diff := cmp.Diff(want, r.did); diff != "" {
			t.Errorf("Apply did (-want +got):\n%s", diff)
		}
		if len(reports) != 2 || !strings.Contains(reports[0].Error(), "NFS server refused 10.0.0.1:/roots/r/1") {
			t.Errorf("reports = %v, want 2 naming the refused export", reports)
		}
	})
	t.Run("gives up when the wait ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := &recorder{nfsFailures: 1 << 30, err: unix.ENOENT}
		err := Apply(ctx, steps, r, time.Millisecond, func(error) {})
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "has no export 10.0.0.1:/roots/r/1") {
			t.Errorf("Apply = %v, want ENOENT naming the export", err)
		}
	})
	t.Run("does not retry a local mount", func(t *testing.T) {
		r := &recorder{nfsFailures: -1, err: unix.ENOMEM}
		err := Apply(context.Background(), steps, r, time.Millisecond, func(error) { t.Error("reported a local failure as retryable") })
		if !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "tmpfs on /w/rw") {
			t.Errorf("Apply = %v, want ENOMEM naming the tmpfs", err)
		}
	})
}
