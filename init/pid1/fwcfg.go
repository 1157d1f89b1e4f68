package pid1

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"kiln.dev/kiln/internal/atomicfile"
)

// QEMU hands a VM files through its firmware configuration device:
//
//	qemu-system-x86_64 … -fw_cfg name=opt/kiln/config,file=kiln.yaml
//
// With the qemu_fw_cfg module loaded the kernel shows each file at
// /sys/firmware/qemu_fw_cfg/by_name/<name>/raw. PID 1 copies the files named
// opt/kiln/<name> to /run/kiln/fw_cfg/<name>; opt/kiln/config, when present,
// is the appliance config and wins over /data/config/kiln.yaml and the
// image's /etc/kiln/kiln.yaml (tests and `kiln vm` boot one image with
// different configs this way). Other files (e.g. a hosts file named by
// provisioning.hosts_file) are there for the config to point at. Only who
// runs the hypervisor can set them, as with the VM's disk.
const (
	// FwCfgSysDir is where the kernel lists kiln's fw_cfg files.
	FwCfgSysDir = "/sys/firmware/qemu_fw_cfg/by_name/opt/kiln"
	// FwCfgConfigName is the fw_cfg file (below opt/kiln/) holding the config.
	FwCfgConfigName = "config"
	// maxFwCfgFile bounds one copied file.
	maxFwCfgFile = 16 << 20
)

// CopyFwCfg copies every fw_cfg file below sysDir (sysDir/<name>/raw) to
// outDir/<name> (mode 0600) and returns the names copied. A missing sysDir
// (not a QEMU VM, no files passed, or no qemu_fw_cfg module) copies nothing.
func CopyFwCfg(sysDir, outDir string) ([]string, error) {
	ents, err := os.ReadDir(sysDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("listing fw_cfg files: %w", err)
	}
	var names []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		raw := filepath.Join(sysDir, name, "raw")
		if _, err := os.Stat(raw); err != nil || strings.HasPrefix(name, ".") {
			continue // a directory of deeper names (opt/kiln/a/b), not a file
		}
		if err := os.MkdirAll(outDir, 0o700); err != nil {
			return names, fmt.Errorf("creating %s: %w", outDir, err)
		}
		if err := copyFile(raw, filepath.Join(outDir, name)); err != nil {
			errs = append(errs, fmt.Errorf("copying fw_cfg file opt/kiln/%s: %w", name, err))
			continue
		}
		names = append(names, name)
	}
	return names, errors.Join(errs...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o600, func(out *os.File) error {
		n, err := io.Copy(out, io.LimitReader(in, maxFwCfgFile+1))
		if err == nil && n > maxFwCfgFile {
			err = fmt.Errorf("larger than %d bytes", maxFwCfgFile)
		}
		return err
	})
}

// isQEMU reports whether the machine is a QEMU VM (DMI system vendor), the
// only place a fw_cfg device exists.
func isQEMU(sysVendor string) bool {
	b, err := os.ReadFile(sysVendor)
	return err == nil && strings.Contains(string(b), "QEMU")
}
