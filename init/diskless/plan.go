package diskless

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dirs are where the plan mounts: Work holds the read-only root and the
// writable layer (/run/kiln-diskless in the initramfs), NewRoot the
// assembled root that init runs in (/newroot).
type Dirs struct {
	Work, NewRoot string
}

// Step is one action of a plan: create a directory, or mount.
type Step struct {
	// Mkdir, when set, is a directory to create (with parents, mode 0755).
	Mkdir string
	Mount *Mount
}

// Mount is one mount(2) call.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

func (m Mount) String() string {
	return fmt.Sprintf("%s on %s (%s, %s)", m.Source, m.Target, m.FSType, m.Data)
}

// Addrs are the resolved addresses the NFS mounts need: the server's for the
// root and the home, and this machine's own (the lease's).
type Addrs struct {
	Root, Home, Client netip.Addr
}

// Plan is the ordered list of steps that assembles the diskless root: the
// root image read-only over NFSv4.2, a tmpfs for the writable layer, an
// overlay of both at NewRoot, the home read-write on NewRoot/home, and the
// empty /dev, /proc and /sys that the kernel file systems move to. It is a
// pure function of the command line, the addresses and the directories.
func Plan(c Cmdline, a Addrs, d Dirs) []Step {
	lower := filepath.Join(d.Work, "root")
	rw := filepath.Join(d.Work, "rw")
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	tmpfsData := "mode=0755"
	if c.OverlaySize != "" {
		tmpfsData = "mode=0755,size=" + c.OverlaySize
	}
	steps := []Step{
		{Mkdir: lower},
		{Mount: &Mount{Source: a.Root.String() + ":" + c.Root.Path, Target: lower, FSType: "nfs4",
			Flags: unix.MS_RDONLY, Data: nfsData(a.Root, a.Client)}},
		{Mkdir: rw},
		{Mount: &Mount{Source: "tmpfs", Target: rw, FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: tmpfsData}},
		{Mkdir: upper},
		{Mkdir: work},
		{Mkdir: d.NewRoot},
		{Mount: &Mount{Source: "overlay", Target: d.NewRoot, FSType: "overlay",
			Data: "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work}},
	}
	if c.Home != (Export{}) {
		home := filepath.Join(d.NewRoot, "home")
		steps = append(steps,
			Step{Mkdir: home},
			Step{Mount: &Mount{Source: a.Home.String() + ":" + c.Home.Path, Target: home, FSType: "nfs4",
				Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: nfsData(a.Home, a.Client)}})
	}
	for _, k := range []string{"dev", "proc", "sys"} {
		steps = append(steps, Step{Mkdir: filepath.Join(d.NewRoot, k)})
	}
	return steps
}

// nfsData is the kernel NFS client's text mount data: NFSv4.2 over TCP,
// hard (a diskless root must wait out a server restart, never fail a read).
// addr= and clientaddr= are what mount.nfs would resolve and add.
func nfsData(server, client netip.Addr) string {
	return "vers=4.2,proto=tcp,hard,addr=" + server.String() + ",clientaddr=" + client.String()
}
