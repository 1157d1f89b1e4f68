package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// Modules are the kernel modules the target needs.
var Modules = []string{"target_core_mod", "target_core_file", "iscsi_target_mod"}

// Run is the iscsi service: it applies the database's volumes and
// initiators to LIO at start (restoring the state after a boot) and again
// whenever the database or the local addresses change, and every 30 s to
// repair drift. LIO's state outlives the service: a restart keeps every
// session, and its first sync finds nothing to change.
func Run(ctx context.Context, env svc.Env) error {
	dir := filepath.Join(env.StateDir, "iscsi")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := prepareLIO(DefaultRoot); err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	if env.Config.Provisioning.Domain == "" {
		return fmt.Errorf("%w (e.g. hall.example): it is the naming authority of kiln's iSCSI names", errNoDomain)
	}
	m, err := OpenManager(ctx, st, env.StateDir, env.Config.Provisioning.Domain, time.Now())
	if err != nil {
		return err
	}
	var subnets []netip.Prefix
	for _, s := range env.Config.Provisioning.Subnets {
		subnets = append(subnets, s.Prefix())
	}
	c := &Controller{Store: st, Sealer: m.Sealer, Files: m.Files,
		Configfs: Configfs{Root: DefaultRoot, Prefix: m.Names.Prefix}, Names: m.Names, Subnets: subnets,
		Port: DefaultPort, Logger: env.Logger}
	if _, err := c.Sync(ctx); err != nil {
		return fmt.Errorf("restoring the iSCSI targets: %w", err)
	}
	env.Ready()
	return c.Watch(ctx, 2*time.Second, 30*time.Second)
}

// Watch syncs when the database's DataVersion or the local addresses
// change (checked every poll) and at least every resync.
func (c *Controller) Watch(ctx context.Context, poll, resync time.Duration) error {
	lastVersion, _ := c.Store.DataVersion(ctx)
	lastAddrs := fmt.Sprint(c.localAddrs())
	lastSync := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		v, err := c.Store.DataVersion(ctx)
		if err != nil {
			c.Logger.Warn("reading the database version", "err", err)
			continue
		}
		addrs := fmt.Sprint(c.localAddrs())
		if v == lastVersion && addrs == lastAddrs && time.Since(lastSync) < resync {
			continue
		}
		if _, err := c.Sync(ctx); err != nil {
			c.Logger.Error("applying the iSCSI targets failed; retrying", "err", err)
			continue
		}
		lastVersion, lastAddrs, lastSync = v, addrs, time.Now()
	}
}

// prepareLIO mounts configfs and loads the target modules when they are
// missing (PID 1 mounts neither), then registers the iSCSI fabric.
func prepareLIO(root string) error {
	cfgfs := filepath.Dir(filepath.Dir(root)) // /sys/kernel/config
	if _, err := os.Stat(filepath.Join(cfgfs, "target")); errors.Is(err, fs.ErrNotExist) {
		if out, err := exec.Command("modprobe", "-a", Modules[0], Modules[1], Modules[2]).CombinedOutput(); err != nil {
			return fmt.Errorf("%w: modprobe %v: %v: %s", ErrNoLIO, Modules, err, out)
		}
		if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
			if err := unix.Mount("configfs", cfgfs, "configfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("%w: mounting configfs on %s: %v", ErrNoLIO, cfgfs, err)
			}
		}
	}
	return Configfs{Root: root}.Prepare()
}
