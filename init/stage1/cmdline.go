package stage1

import (
	"fmt"
	"strings"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/internal/cmdline"
)

// Cmdline is what stage 1 needs from the kernel command line.
type Cmdline struct {
	// RootPARTUUID is the root partition's GPT unique GUID (root=PARTUUID=…).
	RootPARTUUID string
	// Slot is kiln.slot: "a" or "b".
	Slot string
	// Verity is kiln.verity: the root partition's hash tree parameters.
	// Every kiln boot entry carries it; stage 1 mounts the root only
	// through dm-verity.
	Verity verity.Params
	// Init overrides the program run after switching root (init=…); default /sbin/init.
	Init string
	// Params holds every key=value parameter; flags without '=' map to "".
	Params map[string]string
}

// ParseCmdline parses /proc/cmdline. Double quotes group a value with spaces,
// as the kernel allows. It fails when root= is missing or is not a PARTUUID,
// naming the parameter and the fix.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{Init: "/sbin/init", Params: cmdline.Parse(s).Map()}
	root, ok := c.Params["root"]
	if !ok || root == "" {
		return c, fmt.Errorf("kernel command line has no root= parameter (the boot entry must say root=PARTUUID=<uuid>)")
	}
	var err error
	uuid, ok := strings.CutPrefix(root, "PARTUUID=")
	if !ok || !validUUID(uuid) {
		return c, fmt.Errorf("kernel command line root=%s is not PARTUUID=<uuid> (kiln finds its root by GPT partition UUID; fix the boot entry's options line)", root)
	}
	c.RootPARTUUID = strings.ToUpper(uuid)
	c.Slot = c.Params["kiln.slot"]
	v, ok := c.Params[verity.CmdlineParam]
	if !ok {
		return c, fmt.Errorf("kernel command line has no %s= parameter: kiln mounts its root only through dm-verity, and every boot entry kiln writes carries the root hash (fix the boot entry's options line, or reinstall the slot with kiln update)", verity.CmdlineParam)
	}
	if c.Verity, err = verity.ParseParams(v); err != nil {
		return c, fmt.Errorf("kernel command line: %w (fix the boot entry's options line)", err)
	}
	if v := c.Params["init"]; v != "" {
		c.Init = v
	}
	return c, nil
}

// validUUID accepts the 8-4-4-4-12 hex form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}
