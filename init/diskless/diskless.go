// Package diskless is the diskless client's initramfs program (/init): it
// loads the NIC and NFS drivers, brings up the boot NIC with DHCP, mounts the
// root image read-only over NFSv4.2 with a tmpfs overlay on top, mounts the
// home read-write, and switches root to the image's /sbin/init. The kernel
// command line (kiln.nfsroot=, kiln.nfshome=, kiln.overlay=, set by the
// diskless iPXE profile) says what to mount.
//
// On failure it prints what failed and why, waits and reboots: a hall
// machine is unattended, and a reboot runs the network boot again, which
// fetches the boot script as it is now (the operator fixed the host record,
// or the appliance is back). There is no recovery shell: a root shell on
// the console of a machine the NFS server trusts as that host is a way into
// its home and root exports, and a machine waiting at a shell never
// recovers by itself when the server comes back.
package diskless

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/bootnet"
	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/init/switchroot"
)

// Options tune a boot; Main uses the defaults for zero fields.
type Options struct {
	// Out receives the console messages.
	Out io.Writer
	// NetWait bounds the wait for the boot NIC and its DHCP lease; default 2 min.
	NetWait time.Duration
	// MountWait bounds the retries of the NFS mounts; default 3 min.
	MountWait time.Duration
	// FailDelay is the countdown before rebooting after a failure; default 30 s.
	FailDelay time.Duration
}

// Where the plan mounts inside the initramfs.
var initramfsDirs = Dirs{Work: "/run/kiln-diskless", NewRoot: "/newroot"}

// Main runs as PID 1 of the initramfs. It only returns if exec fails and the
// reboot after it fails too.
func Main(o Options) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.NetWait == 0 {
		o.NetWait = 2 * time.Minute
	}
	if o.MountWait == 0 {
		o.MountWait = 3 * time.Minute
	}
	if o.FailDelay == 0 {
		o.FailDelay = 30 * time.Second
	}
	err := boot(o)
	fail(o, err)
}

func printf(o Options, format string, args ...any) {
	fmt.Fprintf(o.Out, "kiln-diskless: "+format+"\n", args...)
}

func boot(o Options) error {
	if err := switchroot.MountKernelFS(); err != nil {
		return err
	}
	switchroot.AttachConsole()
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading /proc/cmdline: %w", err)
	}
	c, err := ParseCmdline(string(b))
	if err != nil {
		return err
	}
	printf(o, "root %s, home %s", c.Root, orNone(c.Home))

	// The kernel asks /sbin/modprobe for modules (fs-nfs4, rpc auth…); this binary answers.
	_ = os.MkdirAll("/sbin", 0o755)
	_ = os.Symlink("/init", "/sbin/modprobe")
	log := slog.New(slog.NewTextHandler(o.Out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	loader, err := kmod.NewLoader(kmod.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("reading the initramfs's module index: %w (the diskless initrd is damaged: rebuild it with kiln image build)", err)
	}
	for _, m := range []string{"nfsv4", "overlay"} {
		if err := loader.Load(m, ""); err != nil {
			return fmt.Errorf("loading the %s module: %w", m, err)
		}
	}
	if err := bootnet.LoopbackUp(); err != nil {
		printf(o, "warning: %v", err)
	}
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			printf(o, "warning: setting host name %s: %v", c.Hostname, err)
		}
	}

	nctx, cancel := context.WithTimeout(context.Background(), o.NetWait)
	defer cancel()
	ifname, lease, err := network(nctx, o, c, loader)
	if err != nil {
		return err
	}
	printf(o, "%s: address %s from DHCP", ifname, lease.Addr.String())
	client := lease.Addr.Addr()
	a := Addrs{Client: client}
	if a.Root, err = resolve(nctx, c.Root.Server, lease); err != nil {
		return err
	}
	a.Home = a.Root
	if c.Home != (Export{}) {
		if a.Home, err = resolve(nctx, c.Home.Server, lease); err != nil {
			return err
		}
	}

	mctx, mcancel := context.WithTimeout(context.Background(), o.MountWait)
	defer mcancel()
	last := time.Time{}
	report := func(err error) {
		if time.Since(last) >= 30*time.Second {
			last = time.Now()
			printf(o, "%v; retrying for up to %s", err, o.MountWait)
		}
	}
	d := initramfsDirs
	if err := Apply(mctx, Plan(c, a, d), System{}, 2*time.Second, report); err != nil {
		return err
	}
	if err := CheckInit(d.NewRoot, c.Init); err != nil {
		return fmt.Errorf("%w (root image %s; fix or re-import it with kiln roots import)", err, c.Root)
	}
	if err := switchroot.MoveKernelFS(d.NewRoot); err != nil {
		return err
	}
	printf(o, "switching root to %s", c.Root)
	return switchroot.Exec(d.NewRoot, c.Init)
}

func orNone(e Export) string {
	if e == (Export{}) {
		return "none"
	}
	return e.String()
}

// network loads the drivers of the machine's devices until the boot NIC
// (c.MAC, or any wired Ethernet NIC) appears, then gets a DHCP lease on it,
// retrying until ctx ends.
func network(ctx context.Context, o Options, c Cmdline, loader *kmod.Loader) (string, bootnet.Lease, error) {
	quiet := slog.New(slog.DiscardHandler)
	start := time.Now()
	announced := false
	var lastErr error
	for {
		if _, err := coldplug.Once("/sys/devices", loader, quiet); err != nil {
			lastErr = err
		}
		nics := bootNICs("/sys/class/net", c.MAC)
		for _, ifname := range nics {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			l, err := bootnet.Acquire(rctx, ifname, c.Hostname)
			cancel()
			if err == nil {
				return ifname, l, nil
			}
			lastErr = err
		}
		if len(nics) == 0 {
			lastErr = errNoNIC(c.MAC)
		}
		if !announced && time.Since(start) > 10*time.Second {
			announced = true
			printf(o, "waiting for the network: %v", lastErr)
		}
		select {
		case <-ctx.Done():
			return "", bootnet.Lease{}, fmt.Errorf("no network after %s: %w (is the appliance's DHCP service running, and the cable in?)", time.Since(start).Round(time.Second), lastErr)
		case <-time.After(time.Second):
		}
	}
}

func errNoNIC(mac net.HardwareAddr) error {
	if mac != nil {
		return fmt.Errorf("no network interface with MAC %s (its driver may be missing from the diskless initrd)", mac)
	}
	return errors.New("no wired Ethernet interface (its driver may be missing from the diskless initrd)")
}

// bootNICs lists the NICs to try: the one with mac, or every wired Ethernet NIC.
func bootNICs(sysClassNet string, mac net.HardwareAddr) []string {
	nics := bootnet.EthernetNICs(sysClassNet)
	if mac == nil {
		return nics
	}
	return slices.DeleteFunc(nics, func(n string) bool {
		b, err := os.ReadFile(sysClassNet + "/" + n + "/address")
		if err != nil {
			return true
		}
		hw, err := net.ParseMAC(strings.TrimSpace(string(b)))
		return err != nil || hw.String() != mac.String()
	})
}

// resolve returns server's IPv4 address, asking the lease's DNS servers
// when it is a name.
func resolve(ctx context.Context, server string, l bootnet.Lease) (netip.Addr, error) {
	if a, err := netip.ParseAddr(server); err == nil {
		return a, nil
	}
	if len(l.DNS) == 0 {
		return netip.Addr{}, fmt.Errorf("NFS server %s is a name, and the DHCP lease names no DNS server (use an address in the boot script, or set DNS in the DHCP service)", server)
	}
	dns := net.JoinHostPort(l.DNS[0].String(), "53")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dns)
	}}
	addrs, err := r.LookupNetIP(ctx, "ip4", server)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolving NFS server %s with DNS server %s: %v", server, dns, err)
	}
	return addrs[0].Unmap(), nil
}

// fail reports err, counts down and reboots.
func fail(o Options, err error) {
	printf(o, "FAILED: %v", err)
	printf(o, "rebooting in %s to retry the network boot", o.FailDelay)
	switchroot.RebootAfter(func(format string, args ...any) { printf(o, format, args...) }, o.FailDelay)
}
