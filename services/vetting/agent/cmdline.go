package agent

import "kiln.dev/kiln/internal/cmdline"

// Cmdline holds the kiln.* parameters the boot script puts on the kernel
// command line of the vetting image.
type Cmdline struct {
	// Server is kiln.server, Token kiln.token, Host kiln.host, MAC kiln.mac;
	// Profile is the optional kiln.profile.
	Server, Token, Host, MAC, Profile string
}

// ParseCmdline reads kiln.* parameters from a kernel command line (the
// contents of /proc/cmdline); the last occurrence of a key wins, as the
// kernel's own parameters do.
func ParseCmdline(s string) Cmdline {
	p := cmdline.Parse(s)
	return Cmdline{Server: p.Get("kiln.server"), Token: p.Get("kiln.token"), Host: p.Get("kiln.host"),
		MAC: p.Get("kiln.mac"), Profile: p.Get("kiln.profile")}
}
