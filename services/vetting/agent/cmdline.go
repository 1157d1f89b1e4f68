package agent

import "strings"

// Cmdline holds the kiln.* parameters the boot script puts on the kernel
// command line of the vetting image.
type Cmdline struct {
	// Server is kiln.server, Token kiln.token, Host kiln.host, MAC kiln.mac;
	// Profile is the optional kiln.profile.
	Server, Token, Host, MAC, Profile string
}

// ParseCmdline reads kiln.* parameters from a kernel command line (the
// contents of /proc/cmdline). Quoted values are not used by kiln's scripts
// and are taken literally; the last occurrence of a key wins, as the
// kernel's own parameters do.
func ParseCmdline(cmdline string) Cmdline {
	var c Cmdline
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "kiln.server":
			c.Server = v
		case "kiln.token":
			c.Token = v
		case "kiln.host":
			c.Host = v
		case "kiln.mac":
			c.MAC = v
		case "kiln.profile":
			c.Profile = v
		}
	}
	return c
}
