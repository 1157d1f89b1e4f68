package shutdown

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Linux is the running kernel.
type Linux struct {
	// Proc is the proc mount; default /proc.
	Proc string
}

// KillAll implements System.
func (Linux) KillAll(sig syscall.Signal) error { return unix.Kill(-1, sig) }

// Others implements System: it counts processes in Proc that are neither the
// caller, kernel threads, nor zombies.
func (l Linux) Others() (int, error) {
	proc := l.Proc
	if proc == "" {
		proc = "/proc"
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(proc + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if state, ppid, ok := parseStat(string(b)); ok && state != "Z" && state != "X" && ppid != 2 && pid != 2 {
			n++
		}
	}
	return n, nil
}

// parseStat returns the state and parent pid from /proc/<pid>/stat; the
// command name in parentheses may itself contain spaces and parentheses.
func parseStat(s string) (state string, ppid int, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return "", 0, false
	}
	return f[0], ppid, true
}

// Sync implements System.
func (Linux) Sync() { unix.Sync() }

// Unmount implements System.
func (Linux) Unmount(target string) error { return unix.Unmount(target, 0) }

// RemountReadOnly implements System.
func (Linux) RemountReadOnly(target string) error {
	return unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
}

// Halt implements System.
func (Linux) Halt(a Action) error {
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if a == Poweroff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	return unix.Reboot(cmd)
}
