package config

import (
	"fmt"
	"slices"
	"strings"

	"kiln.dev/kiln/services/internal/exportname"
)

// NFSService configures the nfs service (opt in: services.nfs.enabled):
// root images and homes of diskless machines, exported by the kernel's
// nfsd to hosts of the machine database inside the provisioning subnets.
type NFSService struct {
	// Threads is the number of nfsd threads; 0: DefaultNFSThreads.
	Threads int `yaml:"threads"`
	// Roles give the hosts of a role (store.Host.Role) that name no root
	// image or home of their own a default, by role name.
	Roles map[string]NFSRole `yaml:"roles"`
	// Homes are the read-write home exports, each a file system of its
	// own (an ext4 image on the data partition), so one class filling its
	// home cannot fill the data partition or another class's home.
	Homes []NFSHome `yaml:"homes"`
}

// NFSHome is one home export.
type NFSHome struct {
	Name string `yaml:"name"`
	// Size is the home's size limit: bytes or a number with M, G or T.
	Size string `yaml:"size"`
}

// Bounds of a home's size: ext4 needs a few MiB for itself.
const (
	MinHomeSize = 16 << 20
	MaxHomeSize = 16 << 40
)

// Bytes returns the parsed size (0 when invalid).
func (h NFSHome) Bytes() int64 {
	n, _ := parseBytes(strings.TrimSpace(h.Size))
	return n
}

// NFSRole is what hosts of one role mount unless they name their own.
type NFSRole struct {
	// RootImage is "name" (the promoted version) or "name@N".
	RootImage string `yaml:"root_image"`
	// Home is the home export's name.
	Home string `yaml:"home"`
}

// DefaultNFSThreads serves a hall of a hundred machines booting at once.
const DefaultNFSThreads = 16

// NFSThreads returns Threads with the default applied.
func (p Provisioning) NFSThreads() int {
	if p.NFS.Threads == 0 {
		return DefaultNFSThreads
	}
	return p.NFS.Threads
}

func (n NFSService) validate(add func(field, problem, fix string)) {
	if n.Threads < 0 || n.Threads > 1024 {
		add("provisioning.nfs.threads", fmt.Sprintf("%d is out of range", n.Threads), "use 1-1024, or 0 for the default 16")
	}
	homes := map[string]int{}
	for i, h := range n.Homes {
		f := fmt.Sprintf("provisioning.nfs.homes[%d]", i)
		if !exportname.Valid(h.Name) {
			add(f+".name", fmt.Sprintf("%q is not a home name", h.Name), "use "+exportname.Rule)
		} else if j, dup := homes[h.Name]; dup {
			add(f+".name", fmt.Sprintf("%q is also provisioning.nfs.homes[%d]", h.Name, j), "give every home its own name")
		}
		homes[h.Name] = i
		if b := h.Bytes(); b < MinHomeSize || b > MaxHomeSize {
			add(f+".size", fmt.Sprintf("%q is not a size from 16M to 16T", h.Size), "give the home's size limit, e.g. size: 50G")
		}
	}
	roles := make([]string, 0, len(n.Roles))
	for r := range n.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		f := "provisioning.nfs.roles." + r
		if strings.TrimSpace(r) == "" {
			add(f, "the role name is empty", "name the role as hosts carry it (kiln hosts add --role NAME)")
		}
		role := n.Roles[r]
		if role.RootImage != "" {
			if _, _, ok := exportname.ParseRef(role.RootImage); !ok {
				add(f+".root_image", fmt.Sprintf("%q is not a root image", role.RootImage), "use NAME (its promoted version) or NAME@VERSION, NAME being "+exportname.Rule)
			}
		}
		if role.Home != "" && !exportname.Valid(role.Home) {
			add(f+".home", fmt.Sprintf("%q is not a home name", role.Home), "use "+exportname.Rule)
		} else if _, ok := homes[role.Home]; role.Home != "" && !ok {
			add(f+".home", fmt.Sprintf("no home %q in provisioning.nfs.homes", role.Home), "add it there with its size, or name one that is")
		}
		if role == (NFSRole{}) {
			add(f, "names neither root_image nor home", "set root_image and/or home, or remove the role")
		}
	}
}
