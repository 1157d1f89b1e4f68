package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"kiln.dev/kiln/services/internal/exportname"
)

// Diskless configures what happens at the machines of a diskless hall.
type Diskless struct {
	// Register lets unknown machines register themselves at their console.
	Register Registration `yaml:"register"`
}

// Registration policies.
const (
	RegisterOpen    = "open"    // the host is created at once
	RegisterApprove = "approve" // an operator approves each registration
)

// Registration configures registration at the machine: an unknown
// machine's boot menu asks the person at its keyboard for its name (and
// room/role), and kiln makes it a host booting BootProfile.
type Registration struct {
	// Enabled offers "register this machine" at unknown machines' consoles.
	Enabled bool `yaml:"enabled"`
	// Policy is RegisterOpen or RegisterApprove; empty: approve.
	Policy string `yaml:"policy"`
	// Roles, when set, are offered in a menu (rooms, or roles); the chosen
	// one becomes the host's role (which picks its root image and home
	// through provisioning.nfs.roles). Empty: every host gets Role.
	Roles []string `yaml:"roles"`
	// Role is the role of registered hosts when Roles is empty.
	Role string `yaml:"role"`
	// BootProfile is what registered hosts boot; empty: diskless.
	BootProfile string `yaml:"boot_profile"`
	// RootImage and Home are given to every registered host (empty: its
	// role's defaults from provisioning.nfs.roles).
	RootImage string `yaml:"root_image"`
	Home      string `yaml:"home"`
	// Retry is how often a machine waiting for approval asks again; 0:
	// DefaultRegisterRetry.
	Retry time.Duration `yaml:"retry"`
}

// DefaultRegisterRetry keeps a waiting hall's polls cheap (120 machines:
// 12 requests a second) while approval shows within seconds.
const DefaultRegisterRetry = 10 * time.Second

// RegisterPolicy returns Policy with the default applied.
func (r Registration) RegisterPolicy() string {
	if r.Policy == "" {
		return RegisterApprove
	}
	return r.Policy
}

// RetryEvery returns Retry with the default applied.
func (r Registration) RetryEvery() time.Duration {
	if r.Retry == 0 {
		return DefaultRegisterRetry
	}
	return r.Retry
}

// Profile returns BootProfile with the default applied.
func (r Registration) Profile() string {
	if r.BootProfile == "" {
		return "diskless"
	}
	return r.BootProfile
}

func (d Diskless) validate(n NFSService, add func(field, problem, fix string)) {
	r := d.Register
	const f = "provisioning.diskless.register"
	if p := r.Policy; p != "" && p != RegisterOpen && p != RegisterApprove {
		add(f+".policy", fmt.Sprintf("unknown policy %q", p), "use open (hosts are created at once) or approve (an operator approves each)")
	}
	if r.Retry != 0 && (r.Retry < time.Second || r.Retry > time.Hour) {
		add(f+".retry", fmt.Sprintf("%s is out of range", r.Retry), "use 1s to 1h, or leave it out for 10s")
	}
	if !slices.Contains([]string{"", "vet", "local", "diskless", "iscsi"}, r.BootProfile) {
		add(f+".boot_profile", fmt.Sprintf("%q cannot be given to a registered machine", r.BootProfile), "use diskless (default), local, vet or iscsi")
	}
	role := func(field, v string) {
		if v == "" || len(v) > 63 || strings.ContainsFunc(v, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
		}) {
			add(field, fmt.Sprintf("%q is not a role a console menu can offer", v), "use 1-63 letters, digits, '-', '_' or '.'")
		} else if v == "unknown" {
			add(field, `"unknown" is the role of machines kiln does not know`, "name the room or role the machine belongs to")
		}
	}
	seen := map[string]int{}
	for i, v := range r.Roles {
		field := fmt.Sprintf("%s.roles[%d]", f, i)
		role(field, v)
		if j, dup := seen[v]; dup {
			add(field, fmt.Sprintf("%q is also %s.roles[%d]", v, f, j), "list every role once")
		}
		seen[v] = i
	}
	if r.Role != "" {
		role(f+".role", r.Role)
		if len(r.Roles) > 0 {
			add(f+".role", "is set beside roles", "set roles (a menu at the machine) or role (one for all), not both")
		}
	}
	if r.RootImage != "" {
		if _, _, ok := exportname.ParseRef(r.RootImage); !ok {
			add(f+".root_image", fmt.Sprintf("%q is not a root image", r.RootImage), "use NAME (its promoted version) or NAME@VERSION, NAME being "+exportname.Rule)
		}
	}
	if r.Home != "" && !exportname.Valid(r.Home) {
		add(f+".home", fmt.Sprintf("%q is not a home name", r.Home), "use "+exportname.Rule)
	} else if r.Home != "" && !slices.ContainsFunc(n.Homes, func(h NFSHome) bool { return h.Name == r.Home }) {
		add(f+".home", fmt.Sprintf("no home %q in provisioning.nfs.homes", r.Home), "add it there with its size, or name one that is")
	}
}
