package stage1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/dm"
)

// VerityTarget returns the device-mapper table of a root partition with
// device number devNum ("major:minor") and partSectors 512-byte sectors laid
// out as p says, or an error when the partition is too small to hold it.
func VerityTarget(p verity.Params, devNum string, partSectors uint64) (dm.Target, error) {
	if need := uint64(p.Size()) / 512; need > partSectors {
		return dm.Target{}, fmt.Errorf("%s says the root and its hash tree take %d sectors, but the partition has %d: the boot entry does not belong to this partition's contents (reinstall the slot)", verity.CmdlineParam, need, partSectors)
	}
	return dm.Target{Length: p.Sectors(), Type: "verity", Params: p.TableParams(devNum)}, nil
}

// openVerity maps the root partition node part through dm-verity and
// returns the verified device's node. The partition's bytes are never
// mounted directly: every block read through the node is checked against
// the root hash, and a block that does not match fails its read with EIO.
func openVerity(o Options, sys blockdev.Sys, part string, p verity.Params, id string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(part, &st); err != nil {
		return "", fmt.Errorf("verified root: %w", err)
	}
	devNum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	b, err := os.ReadFile(filepath.Join(sys.Block, filepath.Base(part), "size"))
	if err != nil {
		return "", fmt.Errorf("verified root: reading the size of %s: %w", part, err)
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return "", fmt.Errorf("verified root: size of %s %q: %w", part, b, err)
	}
	target, err := VerityTarget(p, devNum, sectors)
	if err != nil {
		return "", err
	}
	// devtmpfs creates the control node when dm-mod registers it.
	var c *dm.Control
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err = dm.Open(dm.ControlPath); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("verified root: %w", err)
	}
	defer c.Close()
	dev, err := c.CreateReadOnly(verity.DeviceName, "KILN-VERITY-"+id, []dm.Target{target})
	if err != nil {
		return "", fmt.Errorf("verified root on %s: %w", part, err)
	}
	node, err := sys.EnsureNode(dev.Node())
	if err != nil {
		return "", fmt.Errorf("verified root: %w", err)
	}
	printf(o, "root %s verified by dm-verity as %s (root hash %x…)", part, node, p.RootHash[:8])
	return node, nil
}

// errRootRejected marks a root whose first blocks failed verification.
var errRootRejected = errors.New("the root partition does not match the root hash of its boot entry (corrupted or tampered): refusing to boot it")
