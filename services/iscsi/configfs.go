package iscsi

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRoot is LIO's configfs directory.
const DefaultRoot = "/sys/kernel/config/target"

// ErrNoLIO: configfs has no LIO target (modules not loaded, configfs not mounted).
var ErrNoLIO = errors.New("LIO target not available in configfs")

// Configfs reads and changes LIO through its configfs tree at Root.
type Configfs struct {
	Root string
	// Prefix is the naming authority of kiln's targets (Names.Prefix):
	// targets named below it, or with a LUN on kiln's HBA, are kiln's;
	// every other target is left alone.
	Prefix string
}

func (c Configfs) hba() string { return filepath.Join(c.Root, "core", fmt.Sprintf("fileio_%d", HBA)) }

func (c Configfs) tpg(iqn string) string {
	return filepath.Join(c.Root, "iscsi", iqn, fmt.Sprintf("tpgt_%d", TPG))
}

// Prepare registers the iSCSI fabric with LIO (creating target/iscsi, as
// targetcli does, makes the kernel load iscsi_target_mod) and reports
// ErrNoLIO when that is impossible.
func (c Configfs) Prepare() error {
	if _, err := os.Stat(c.Root); err != nil {
		return fmt.Errorf("%w: %v (load target_core_mod and mount configfs on /sys/kernel/config)", ErrNoLIO, err)
	}
	if err := mkdir(filepath.Join(c.Root, "iscsi")); err != nil {
		return fmt.Errorf("%w: %v (load iscsi_target_mod)", ErrNoLIO, err)
	}
	return nil
}

// Observe reads kiln's part of LIO: the backstores of its HBA and its targets.
func (c Configfs) Observe() (State, error) {
	var st State
	devs, err := os.ReadDir(c.hba())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("reading backstores: %w", err)
	}
	for _, d := range devs {
		if !d.IsDir() {
			continue
		}
		b, err := c.readBackstore(d.Name())
		if err != nil {
			return State{}, err
		}
		st.Backstores = append(st.Backstores, b)
	}
	iqns, err := os.ReadDir(filepath.Join(c.Root, "iscsi"))
	if err != nil {
		return State{}, fmt.Errorf("reading iSCSI targets: %w", err)
	}
	for _, d := range iqns {
		if !d.IsDir() || !strings.HasPrefix(d.Name(), "iqn.") && !strings.HasPrefix(d.Name(), "eui.") && !strings.HasPrefix(d.Name(), "naa.") {
			continue // discovery_auth and other fabric entries
		}
		t, ours, err := c.readTarget(d.Name())
		if err != nil {
			return State{}, err
		}
		if ours {
			st.Targets = append(st.Targets, t)
		}
	}
	st.sort()
	return st, nil
}

func (c Configfs) readBackstore(name string) (Backstore, error) {
	dir := filepath.Join(c.hba(), name)
	info, err := readAttr(filepath.Join(dir, "info"))
	if err != nil {
		return Backstore{}, err
	}
	b := Backstore{Name: name}
	// "… File: /path  Size: 123  Mode: …"; kiln's paths have no spaces.
	if _, after, ok := strings.Cut(info, "File: "); ok {
		b.File, after, _ = strings.Cut(after, " ")
		if _, after, ok := strings.Cut(after, "Size: "); ok {
			s, _, _ := strings.Cut(after, " ")
			b.Size, _ = strconv.ParseInt(s, 10, 64)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "enable")); err == nil {
		if en, err := readAttr(filepath.Join(dir, "enable")); err == nil && en != "1" {
			b.File = "" // configured but not enabled: recreate it
		}
	}
	serial, err := readAttr(filepath.Join(dir, "wwn", "vpd_unit_serial"))
	if err != nil {
		return Backstore{}, err
	}
	// "T10 VPD Unit Serial Number: <serial>"
	_, b.Serial, _ = strings.Cut(serial, ": ")
	return b, nil
}

func (c Configfs) readTarget(iqn string) (Target, bool, error) {
	ours := strings.HasPrefix(iqn, c.Prefix+":")
	t := Target{IQN: iqn, Attrib: map[string]string{}, Param: map[string]string{}}
	tpg := c.tpg(iqn)
	if _, err := os.Stat(tpg); errors.Is(err, fs.ErrNotExist) {
		return t, ours, nil
	}
	for k := range tpgAttrib {
		v, err := readAttr(filepath.Join(tpg, "attrib", k))
		if err != nil {
			return Target{}, false, err
		}
		t.Attrib[k] = v
	}
	for k := range tpgParam {
		v, err := readAttr(filepath.Join(tpg, "param", k))
		if err != nil {
			return Target{}, false, err
		}
		t.Param[k] = v
	}
	en, err := readAttr(filepath.Join(tpg, "enable"))
	if err != nil {
		return Target{}, false, err
	}
	t.Enabled = en == "1"
	nps, err := os.ReadDir(filepath.Join(tpg, "np"))
	if err != nil {
		return Target{}, false, fmt.Errorf("reading %s portals: %w", iqn, err)
	}
	for _, np := range nps {
		a, err := netip.ParseAddrPort(np.Name())
		if err != nil {
			continue // not an address kiln would make ([v6] forms parse too)
		}
		t.Portals = append(t.Portals, a)
	}
	luns, err := os.ReadDir(filepath.Join(tpg, "lun"))
	if err != nil {
		return Target{}, false, fmt.Errorf("reading %s LUNs: %w", iqn, err)
	}
	for _, l := range luns {
		n, ok := strings.CutPrefix(l.Name(), "lun_")
		idx, err := strconv.Atoi(n)
		if !ok || err != nil {
			continue
		}
		lun := LUN{Index: idx}
		dir := filepath.Join(tpg, "lun", l.Name())
		if link, err := linkIn(dir); err == nil && link != "" {
			if dest, err := os.Readlink(filepath.Join(dir, link)); err == nil &&
				filepath.Base(filepath.Dir(dest)) == fmt.Sprintf("fileio_%d", HBA) {
				lun.Backstore = filepath.Base(dest)
				ours = true
			}
		}
		t.LUNs = append(t.LUNs, lun)
	}
	acls, err := os.ReadDir(filepath.Join(tpg, "acls"))
	if err != nil {
		return Target{}, false, fmt.Errorf("reading %s ACLs: %w", iqn, err)
	}
	for _, a := range acls {
		acl, err := readACL(filepath.Join(tpg, "acls", a.Name()))
		if err != nil {
			return Target{}, false, err
		}
		t.ACLs = append(t.ACLs, acl)
	}
	return t, ours, nil
}

func readACL(dir string) (ACL, error) {
	acl := ACL{Initiator: filepath.Base(dir)}
	for _, f := range []struct {
		name string
		v    *string
	}{{"userid", &acl.CHAP.UserID}, {"password", &acl.CHAP.Password},
		{"userid_mutual", &acl.CHAP.MutualUserID}, {"password_mutual", &acl.CHAP.MutualPassword}} {
		v, err := readAttr(filepath.Join(dir, "auth", f.name))
		if err != nil {
			return ACL{}, err
		}
		if v == "NULL" { // what clearing leaves
			v = ""
		}
		*f.v = v
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ACL{}, fmt.Errorf("reading ACL %s: %w", dir, err)
	}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "lun_")
		idx, err := strconv.Atoi(n)
		if !ok || err != nil || !e.IsDir() {
			continue
		}
		// A mapped LUN without its link maps nothing: leave it out so the
		// plan maps it again.
		if link, err := linkIn(filepath.Join(dir, e.Name())); err == nil && link != "" {
			acl.LUNs = append(acl.LUNs, idx)
		}
	}
	return acl, nil
}

// linkIn returns the name of the first symlink in dir ("" if none).
func linkIn(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink != 0 {
			return e.Name(), nil
		}
	}
	return "", nil
}

func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeAttr(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", v, path, err)
	}
	return nil
}

func mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}

func rmdir(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// clearDir calls remove on each entry of dir, then removes dir; a
// missing dir is already clear. configfs removes a directory's own
// attributes and default groups with it, never its links and made groups.
func clearDir(dir string, remove func(path string, e fs.DirEntry) error) error {
	if err := clearEntries(dir, remove); err != nil {
		return err
	}
	return rmdir(dir)
}

// clearEntries calls remove on each entry of dir (none if dir is missing).
func clearEntries(dir string, remove func(path string, e fs.DirEntry) error) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := remove(filepath.Join(dir, e.Name()), e); err != nil {
			return err
		}
	}
	return nil
}

// unlinkAll removes the symlinks in dir, then dir.
func unlinkAll(dir string) error {
	return clearDir(dir, func(p string, e fs.DirEntry) error {
		if e.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
		return nil
	})
}

// Apply runs p's steps in order and stops at the first error; what ran
// stays applied, and the next Observe+Diff continues from there.
func (c Configfs) Apply(p Plan) error {
	for _, s := range p {
		if err := c.apply(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func (c Configfs) apply(s Step) error {
	tpg := c.tpg(s.Target)
	lunDir := func(n int) string { return filepath.Join(tpg, "lun", fmt.Sprintf("lun_%d", n)) }
	aclDir := filepath.Join(tpg, "acls", s.Initiator)
	switch s.Op {
	case OpDelACL:
		return delACL(aclDir)
	case OpUnmapLUN:
		return unlinkAll(filepath.Join(aclDir, fmt.Sprintf("lun_%d", s.LUN)))
	case OpDelLUN:
		return unlinkAll(lunDir(s.LUN))
	case OpDelPortal:
		return rmdir(filepath.Join(tpg, "np", s.Portal.String()))
	case OpDelTarget:
		return c.delTarget(s.Target)
	case OpDelBackstore:
		return rmdir(filepath.Join(c.hba(), s.Backstore))
	case OpAddBackstore:
		dir := filepath.Join(c.hba(), s.Backstore)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		// Buffered I/O with write-cache emulation: the initiator's
		// SYNCHRONIZE CACHE reaches the file as fsync, without O_DSYNC on
		// every write.
		if err := writeAttr(filepath.Join(dir, "control"),
			fmt.Sprintf("fd_dev_name=%s,fd_dev_size=%d,fd_buffered_io=1", s.File, s.Size)); err != nil {
			return err
		}
		if err := writeAttr(filepath.Join(dir, "enable"), "1"); err != nil {
			return err
		}
		return writeAttr(filepath.Join(dir, "wwn", "vpd_unit_serial"), s.Serial)
	case OpResize:
		return writeAttr(filepath.Join(c.hba(), s.Backstore, "control"), fmt.Sprintf("fd_dev_size=%d", s.Size))
	case OpAddTarget:
		return os.MkdirAll(tpg, 0o755)
	case OpSetAttrib:
		return writeAttr(filepath.Join(tpg, "attrib", s.Key), s.Value)
	case OpSetParam:
		return writeAttr(filepath.Join(tpg, "param", s.Key), s.Value)
	case OpAddPortal:
		return mkdir(filepath.Join(tpg, "np", s.Portal.String()))
	case OpAddLUN:
		dir := lunDir(s.LUN)
		if err := unlinkAll(dir); err != nil {
			return err
		}
		if err := mkdir(dir); err != nil {
			return err
		}
		return os.Symlink(filepath.Join(c.hba(), s.Backstore), filepath.Join(dir, s.Backstore))
	case OpAddACL:
		return mkdir(aclDir)
	case OpSetCHAP:
		for _, f := range []struct{ name, v string }{{"userid", s.CHAP.UserID}, {"password", s.CHAP.Password},
			{"userid_mutual", s.CHAP.MutualUserID}, {"password_mutual", s.CHAP.MutualPassword}} {
			// LIO keeps every byte written (a newline would become part of
			// the secret) and clears a value with "NULL".
			v := f.v
			if v == "" {
				v = "NULL"
			}
			if err := writeAttr(filepath.Join(aclDir, "auth", f.name), v); err != nil {
				// Never let a secret reach a log through the error.
				return fmt.Errorf("setting CHAP %s of %s: %w", f.name, s.Initiator, errors.Unwrap(err))
			}
		}
		return nil
	case OpMapLUN:
		dir := filepath.Join(aclDir, fmt.Sprintf("lun_%d", s.LUN))
		if err := unlinkAll(dir); err != nil {
			return err
		}
		if err := mkdir(dir); err != nil {
			return err
		}
		return os.Symlink(lunDir(s.LUN), filepath.Join(dir, "lun"))
	case OpEnable:
		return writeAttr(filepath.Join(tpg, "enable"), "1")
	}
	return fmt.Errorf("unknown step %q", s.Op)
}

// delACL removes an ACL's mapped LUNs, then the ACL.
func delACL(dir string) error {
	return clearDir(dir, func(p string, e fs.DirEntry) error {
		if strings.HasPrefix(e.Name(), "lun_") && e.IsDir() {
			return unlinkAll(p)
		}
		return nil
	})
}

// delTarget removes a target bottom-up: ACLs, LUNs, portals, the TPG, the target.
func (c Configfs) delTarget(iqn string) error {
	return clearDir(filepath.Join(c.Root, "iscsi", iqn), func(tpg string, e fs.DirEntry) error {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "tpgt_") {
			return nil
		}
		writeAttr(filepath.Join(tpg, "enable"), "0") // best effort: ends sessions first
		// acls, lun and np are the TPG's default groups: emptied, removed with it.
		for _, sub := range []struct {
			name   string
			remove func(string) error
		}{{"acls", delACL}, {"lun", unlinkAll}, {"np", rmdir}} {
			err := clearEntries(filepath.Join(tpg, sub.name), func(p string, e fs.DirEntry) error { return sub.remove(p) })
			if err != nil {
				return err
			}
		}
		return rmdir(tpg)
	})
}
