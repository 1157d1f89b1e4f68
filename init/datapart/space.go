package datapart

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Space is the room left on a mounted file system.
type Space struct {
	Free, Total uint64 // bytes; Free is what non-reserved writers may use
}

// Statfs reports the Space of the file system mounted at a path.
type Statfs func(path string) (Space, error)

// HostStatfs is the real Statfs.
func HostStatfs(path string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Space{}, fmt.Errorf("checking free space on %s: %w", path, err)
	}
	return Space{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)}, nil
}

// Thresholds below which the data partition counts as full: services then
// fail to store state and logs stop being persisted.
const (
	FullBytes   = 32 << 20
	FullPercent = 5
)

// Full reports whether s is below either threshold.
func (s Space) Full() bool {
	return s.Free < FullBytes || s.Free*100 < s.Total*FullPercent
}

// FullProblem is the operator-facing description of a full data partition
// mounted at mountpoint: what is wrong and what to do. The partition is never
// reformatted for this.
func (s Space) FullProblem(mountpoint string) string {
	return fmt.Sprintf("data partition is full (%d MiB free of %d MiB): services cannot store state and logs stay in memory only. "+
		"To fix: in the recovery menu open the service logs to see what grew, then in the shell remove old files under %s/log "+
		"(rotated *.log.N) or unneeded artifacts under %s/state; or move the appliance to a bigger disk (the data partition grows to fill it at boot). "+
		"Nothing is erased automatically", s.Free>>20, s.Total>>20, mountpoint, mountpoint)
}
