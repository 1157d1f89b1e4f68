package appliance

import (
	"context"
	"fmt"
	"os"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// ImportHostsFile imports provisioning.hosts_file (if set) into the machine
// database in stateDir before the services start: hosts it lists are
// created or updated by name, others are left alone. It returns nil when no
// file is configured.
func ImportHostsFile(ctx context.Context, cfg config.Config, stateDir string) (*store.ImportResult, error) {
	file := cfg.Provisioning.HostsFile
	if file == "" {
		return nil, nil
	}
	f, err := store.FormatOf(file)
	if err != nil {
		return nil, fmt.Errorf("provisioning.hosts_file: %w", err)
	}
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("provisioning.hosts_file: %w (fix the path or remove the field)", err)
	}
	defer fh.Close()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("importing provisioning.hosts_file: %w", err)
	}
	db, err := store.Open(ctx, store.Path(stateDir))
	if err != nil {
		return nil, fmt.Errorf("importing provisioning.hosts_file: %w", err)
	}
	defer db.Close()
	res, err := db.ImportHosts(ctx, fh, f, true)
	if err != nil {
		return nil, fmt.Errorf("importing provisioning.hosts_file %s (nothing was imported):\n%w", file, err)
	}
	return &res, nil
}
