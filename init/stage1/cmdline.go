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
	// Live is kiln.live: the ID of the live ISO to boot from (no root= then).
	Live string
	// Verity is kiln.verity: the root's hash tree parameters (a slot's
	// partition, or the live ISO's root squashfs). Every kiln boot entry
	// carries it; stage 1 mounts the root only through dm-verity.
	Verity verity.Params
	// Init overrides the program run after switching root (init=…); default /sbin/init.
	Init string
	// Params holds every key=value parameter; flags without '=' map to "".
	Params map[string]string
}

// ParseCmdline parses /proc/cmdline. Double quotes group a value with spaces,
// as the kernel allows. It fails, naming the parameter and the fix, when
// neither kiln.live= (a live ISO) nor root=PARTUUID= names the root, or when
// kiln.verity= is missing or malformed.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{Init: "/sbin/init", Params: cmdline.Parse(s).Map()}
	if v := c.Params["init"]; v != "" {
		c.Init = v
	}
	fix := "fix the boot entry's options line, or reinstall the slot with kiln update"
	if live, ok := c.Params["kiln.live"]; ok {
		if !validUUID(live) {
			return c, fmt.Errorf("kernel command line kiln.live=%s is not a live ISO ID (a UUID); the ISO's boot entry is damaged: write the ISO again", live)
		}
		c.Live = strings.ToUpper(live)
		fix = "the ISO's boot entry is damaged: write the ISO again"
	} else {
		root, ok := c.Params["root"]
		if !ok || root == "" {
			return c, fmt.Errorf("kernel command line has no root= parameter (the boot entry must say root=PARTUUID=<uuid>)")
		}
		uuid, ok := strings.CutPrefix(root, "PARTUUID=")
		if !ok || !validUUID(uuid) {
			return c, fmt.Errorf("kernel command line root=%s is not PARTUUID=<uuid> (kiln finds its root by GPT partition UUID; fix the boot entry's options line)", root)
		}
		c.RootPARTUUID = strings.ToUpper(uuid)
		c.Slot = c.Params["kiln.slot"]
	}
	v, ok := c.Params[verity.CmdlineParam]
	if !ok {
		return c, fmt.Errorf("kernel command line has no %s= parameter: kiln mounts its root only through dm-verity, and every boot entry kiln writes carries the root hash (%s)", verity.CmdlineParam, fix)
	}
	var err error
	if c.Verity, err = verity.ParseParams(v); err != nil {
		return c, fmt.Errorf("kernel command line: %w (%s)", err, fix)
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
