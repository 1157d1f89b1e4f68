package nfs

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/loopdev"
	"kiln.dev/kiln/services/store"
)

// Layout is where the nfs service keeps its files on the data partition.
type Layout struct {
	// State is the service's directory, <state>/nfs.
	State string
	// Exports is the export root (the NFSv4 pseudo-root), <state>/nfs/exports.
	Exports string
	// Staging holds imports not yet complete; it is outside the export root,
	// so no client ever sees a half-written root image.
	Staging string
}

// LayoutOf returns the layout below a state directory.
func LayoutOf(stateDir string) Layout {
	d := filepath.Join(stateDir, "nfs")
	return Layout{State: d, Exports: filepath.Join(d, "exports"), Staging: filepath.Join(d, "staging")}
}

// RootDir is the directory of one root image version.
func (l Layout) RootDir(name string, version int) string {
	return filepath.Join(l.Exports, "roots", name, fmt.Sprint(version))
}

// Prepare creates the layout's directories.
func (l Layout) Prepare() error {
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{l.State, 0o755}, {l.Exports, 0o755}, {filepath.Join(l.Exports, "roots"), 0o755}, {filepath.Join(l.Exports, "homes"), 0o755}, {l.Staging, 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("creating %s: %w", d.path, err)
		}
	}
	return nil
}

// Choice returns the root image and home host h mounts: its own, else its
// role's default from the config.
func Choice(cfg config.Provisioning, h store.Host) (root, home string) {
	root, home = h.RootImage, h.Home
	if r, ok := cfg.NFS.Roles[h.Role]; ok {
		root, home = or(root, r.RootImage), or(home, r.Home)
	}
	return root, home
}

// Desired reads the machine database and the config into the plan's
// input: hosts with their reserved address and active leases, the stored
// root image versions and the configured homes that are mounted.
func Desired(ctx context.Context, st *store.Store, cfg config.Provisioning, stateDir string, now time.Time) (Input, error) {
	return desired(ctx, st, cfg, stateDir, now, func(dir string) bool {
		_, ok := loopdev.MountSource(dir)
		return ok
	})
}

func desired(ctx context.Context, st *store.Store, cfg config.Provisioning, stateDir string, now time.Time, mounted func(dir string) bool) (Input, error) {
	lay := LayoutOf(stateDir)
	in := Input{DataDir: filepath.Clean(stateDir), ExportRoot: lay.Exports}
	for _, s := range cfg.Subnets {
		if s.Mode != config.ModeOff && s.Prefix().IsValid() {
			in.Subnets = append(in.Subnets, s.Prefix())
		}
	}
	hosts, err := st.ListHosts(ctx)
	if err != nil {
		return Input{}, err
	}
	leases, err := st.Leases(ctx, "")
	if err != nil {
		return Input{}, err
	}
	byMAC := map[string][]netip.Addr{}
	for _, l := range leases {
		if l.MAC != "" && l.Active(now) {
			byMAC[l.MAC] = append(byMAC[l.MAC], l.IP)
		}
	}
	for _, h := range hosts {
		root, home := Choice(cfg, h)
		if root == "" && home == "" {
			continue
		}
		nh := Host{Name: h.Name, Root: root, Home: home}
		if h.IPv4.IsValid() {
			nh.Addrs = append(nh.Addrs, h.IPv4)
		}
		for _, m := range h.MACs {
			for _, a := range byMAC[m] {
				if !slices.Contains(nh.Addrs, a) {
					nh.Addrs = append(nh.Addrs, a)
				}
			}
		}
		in.Hosts = append(in.Hosts, nh)
	}
	images, err := st.RootImages(ctx)
	if err != nil {
		return Input{}, err
	}
	for _, ri := range images {
		in.Roots = append(in.Roots, RootImage{Name: ri.Name, Version: ri.Version, Promoted: ri.Promoted})
	}
	for _, h := range cfg.NFS.Homes {
		if mounted(lay.HomeDir(h.Name)) {
			in.Homes = append(in.Homes, h.Name)
		}
	}
	return in, nil
}
