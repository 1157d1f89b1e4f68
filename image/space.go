package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/partitions"
)

// ErrNoSpace marks a build stopped because a host file system is (or would
// become) full.
var ErrNoSpace = errors.New("not enough free disk space")

// FS is what a Statfs reports about the file system holding a directory.
type FS struct {
	ID   string // file systems with equal IDs share their free space
	Free uint64 // bytes an unprivileged writer may still use
}

// Statfs reports on the file system of an existing directory.
type Statfs func(dir string) (FS, error)

// HostStatfs is the real Statfs.
func HostStatfs(dir string) (FS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return FS{}, fmt.Errorf("checking free space in %s: %w", dir, err)
	}
	return FS{ID: fmt.Sprint(st.Fsid.Val), Free: st.Bavail * uint64(st.Bsize)}, nil
}

// SpaceNeed is room a build needs in one directory.
type SpaceNeed struct {
	Dir   string // the directory the build writes to (it may not exist yet)
	Flag  string // how the operator moves it elsewhere: "--out", "--cache", "TMPDIR"
	Bytes uint64
}

// NoSpaceError says which directory is short of space and what to do.
type NoSpaceError struct {
	Dir        string
	Flag       string
	Free, Need uint64 // Need is 0 when a write already failed with ENOSPC
	Err        error  // the failed write, if any
}

func (e *NoSpaceError) Error() string {
	var what string
	if e.Need > 0 {
		what = fmt.Sprintf("%s has %s free, the build needs about %s there", e.Dir, mibs(e.Free), mibs(e.Need))
	} else {
		what = fmt.Sprintf("%s filled up during the build (%v); %s free now", e.Dir, e.Err, mibs(e.Free))
	}
	return fmt.Sprintf("%v: %s. Check with: df -h %s; then free space there, or build elsewhere with %s",
		ErrNoSpace, what, e.Dir, moveHint(e.Flag))
}

func (e *NoSpaceError) Unwrap() error { return ErrNoSpace }

func moveHint(flag string) string {
	switch flag {
	case "TMPDIR":
		return "TMPDIR=/other/dir (staging files go there)"
	case "":
		return "--out/--cache/TMPDIR pointing to a bigger disk"
	}
	return flag + " /other/dir"
}

func mibs(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }

// CopyNeed estimates the room a converted copy of the image (qcow2, VMDK, VHDX,
// OVA) takes at path: the populated bytes, twice for an OVA (it assembles from a
// temporary VMDK next to it).
func CopyNeed(s Spec, flag, path string) SpaceNeed {
	populated := 2*(spaceKernel+spaceInitrd) + 2*spaceRoot(s)
	if strings.HasSuffix(path, ".ova") {
		populated *= 2
	}
	return SpaceNeed{Dir: filepath.Dir(path), Flag: flag, Bytes: populated}
}

// ISONeed is the room the live ISO at path needs: kernel and initrd twice (the
// ISO tree and the ESP image inside it, plus the ESP image in the work dir),
// the root squashfs once, and the install data (the disk image's ESP, with
// the vetting image, and partition tables) twice (ISO and work dir).
func ISONeed(s Spec, path string) SpaceNeed {
	return SpaceNeed{Dir: filepath.Dir(path), Flag: "--iso", Bytes: 5*(spaceKernel+spaceInitrd) + 2*spaceVetExtra + spaceRoot(s)}
}

// Size estimates shared by SpaceNeeds and CopyNeed.
const (
	spaceRootExtra = 48 << 20 // kernel modules, e2fsprogs, iPXE, file system overhead
	spaceKernel    = 16 << 20 // vmlinuz, with room
	spaceInitrd    = 16 << 20 // stage 1 + modules, with room
	spaceVetExtra  = 16 << 20 // the live image's modules (~10 MiB compressed), with room
	// spaceDisklessExtra is the diskless initrd's NIC and NFS modules, with room.
	spaceDisklessExtra = 12 << 20
)

func spaceFileSize(p string) uint64 {
	if st, err := os.Stat(p); p != "" && err == nil {
		return uint64(st.Size())
	}
	return 0
}

// spaceBins is the size of the binaries a root holds.
func spaceBins(s Spec) uint64 {
	var bins uint64
	for _, p := range []string{s.Kiln, s.Busybox, s.Stage1, s.HelloInit} {
		bins += spaceFileSize(p)
	}
	return bins
}

// spaceVet is the network-booted images' kernels and initrds: the vetting
// live image and the diskless client image.
func spaceVet(s Spec) uint64 {
	var n uint64
	if s.Agent != "" {
		n += spaceKernel + spaceFileSize(s.Agent) + spaceFileSize(s.Busybox) + spaceVetExtra
	}
	if s.Diskless != "" {
		n += spaceKernel + spaceFileSize(s.Diskless) + spaceDisklessExtra
	}
	return n
}

// spaceRoot bounds a root squashfs.
func spaceRoot(s Spec) uint64 {
	return min(spaceBins(s)+spaceRootExtra+spaceVet(s), partitions.RootSize)
}

// SpaceNeeds estimates what a build writes where. out is the raw image (or the
// payload directory when payloads is set), qcow2 the optional qcow2 copy, work
// the staging directory. The raw image is sparse: only the ESP's files and the
// two root copies take room; a root squashfs is at most the binaries it holds
// plus modules and tools (rootExtra), never more than its partition. With
// Spec.Agent the root also holds the vetting live image (the kernel again
// and an initrd of the agent, busybox and vetExtra of modules), which is
// also written to vet/ next to the raw image.
func SpaceNeeds(s Spec, out, qcow2, work string, payloads bool) []SpaceNeed {
	const (
		rootExtra = spaceRootExtra
		kernel    = spaceKernel
		initrd    = spaceInitrd
	)
	bins, vet, root := spaceBins(s), spaceVet(s), spaceRoot(s)
	var esp uint64 = 2 * (kernel + initrd)
	var needs []SpaceNeed
	if payloads {
		needs = append(needs, SpaceNeed{Dir: out, Flag: "--payloads", Bytes: root + kernel + initrd})
	} else {
		needs = append(needs, SpaceNeed{Dir: filepath.Dir(out), Flag: "--out", Bytes: esp + 2*root + vet})
		if qcow2 != "" {
			needs = append(needs, CopyNeed(s, "--qcow2", qcow2))
		}
	}
	// Staging: the uncompressed root tree and the squashfs made from it.
	needs = append(needs, SpaceNeed{Dir: work, Flag: "TMPDIR", Bytes: 2*bins + 2*rootExtra + 2*vet + root})
	var missing uint64
	for _, p := range s.Lock.Pins {
		if m, _ := filepath.Glob(filepath.Join(s.CacheDir, p.Name+"_*.deb")); len(m) == 0 {
			if strings.HasPrefix(p.Name, "linux-image") {
				missing += 96 << 20
			} else {
				missing += 8 << 20
			}
		}
	}
	if missing > 0 {
		needs = append(needs, SpaceNeed{Dir: s.CacheDir, Flag: "--cache", Bytes: missing})
	}
	return needs
}

// CheckSpace compares needs with the free space statfs reports, adding up
// needs of directories on the same file system. It returns a *NoSpaceError
// (naming the first directory of a full file system) or nil.
func CheckSpace(needs []SpaceNeed, statfs Statfs) error {
	type fsNeed struct {
		first SpaceNeed
		fs    FS
		total uint64
	}
	byFS := map[string]*fsNeed{}
	var order []string
	for _, n := range needs {
		fs, err := statfs(existingParent(n.Dir))
		if err != nil {
			return err
		}
		f := byFS[fs.ID]
		if f == nil {
			f = &fsNeed{first: n, fs: fs}
			byFS[fs.ID] = f
			order = append(order, fs.ID)
		}
		f.total += n.Bytes
	}
	for _, id := range order {
		f := byFS[id]
		if f.total > f.fs.Free {
			return &NoSpaceError{Dir: f.first.Dir, Flag: f.first.Flag, Free: f.fs.Free, Need: f.total}
		}
	}
	return nil
}

// existingParent returns dir or its nearest existing ancestor.
func existingParent(dir string) string {
	d := filepath.Clean(dir)
	for {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return d
		}
		d = p
	}
}

// IsNoSpace reports whether err is a write that failed because the disk is
// full (ENOSPC, EDQUOT, or a tool that said so).
func IsNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	return strings.Contains(err.Error(), "No space left on device")
}

// NoSpace turns err into a *NoSpaceError when it is a full-disk failure (see
// IsNoSpace), and returns it unchanged otherwise. The directory blamed is the
// first of the build's needs whose path the error names, else the one with the
// least free space.
func NoSpace(err error, needs []SpaceNeed, statfs Statfs) error {
	if !IsNoSpace(err) || len(needs) == 0 {
		return err
	}
	var ns *NoSpaceError
	if errors.As(err, &ns) {
		return err
	}
	var best *NoSpaceError
	for _, n := range needs {
		e := &NoSpaceError{Dir: n.Dir, Flag: n.Flag, Err: err}
		fs, serr := statfs(existingParent(n.Dir))
		if serr == nil {
			e.Free = fs.Free
		}
		if strings.Contains(err.Error(), filepath.Clean(n.Dir)+"/") {
			return e
		}
		if best == nil || (serr == nil && e.Free < best.Free) {
			best = e
		}
	}
	return best
}
