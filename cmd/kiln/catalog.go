package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/dhcp"
	"kiln.dev/kiln/services/dns"
	"kiln.dev/kiln/services/httpboot"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/mgmt"
	"kiln.dev/kiln/services/netconf"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/ntp"
	"kiln.dev/kiln/services/svc"
	"kiln.dev/kiln/services/syslog"
	"kiln.dev/kiln/services/tftp"
)

// catalogEntry is one service built into kiln.
type catalogEntry struct {
	name string
	// deps must be ready before this service starts.
	deps []string
	// after orders without requiring: when a service named here is enabled,
	// it must be ready before this one starts (like systemd's After=).
	after []string
	// enabled gives the default when the config has no services.<name>.enabled.
	enabled func(config.Config) bool
	run     svc.RunFunc
}

// serviceCatalog lists every service kiln can run. Adding one is one line here.
func serviceCatalog() []catalogEntry {
	return []catalogEntry{
		{name: "mgmt", enabled: always, run: mgmt.Run},
		{name: "netconf", enabled: networkManaged, run: netconf.Run},
		{name: "dhcp", enabled: provisioning, run: dhcp.Run, after: []string{"netconf"}},
		{name: "dns", enabled: provisioning, run: dns.Run, after: []string{"netconf"}},
		{name: "tftp", enabled: provisioning, run: tftp.Run, after: []string{"netconf"}},
		{name: "httpboot", enabled: provisioning, run: httpboot.Run, after: []string{"netconf"}},
		{name: "syslog", enabled: config.Config.SyslogByDefault, run: syslog.Run, after: []string{"netconf"}},
		{name: "ntp", enabled: config.Config.NTPByDefault, run: ntp.Run, after: []string{"netconf"}},
		{name: "iscsi", enabled: optIn, run: iscsi.Run, after: []string{"netconf"}},
		{name: "nfs", enabled: optIn, run: nfs.Run, after: []string{"netconf"}},
		{name: "update", enabled: func(c config.Config) bool { return c.Update.Channel != "" }, run: runUpdateService, after: []string{"netconf"}},
	}
}

// checkServiceNames refuses services.<name> entries for services kiln does not have.
func checkServiceNames(cfg config.Config) error {
	for name := range cfg.Services {
		if _, ok := findService(name); !ok {
			return fmt.Errorf("%w:\n%w", config.ErrInvalid, &config.FieldError{
				Field:   "services." + name,
				Problem: fmt.Sprintf("kiln has no service %q", name),
				Fix:     "use one of: " + strings.Join(serviceNames(), ", "),
			})
		}
	}
	return nil
}

func always(config.Config) bool { return true }

// optIn services run only when services.<name>.enabled says so: the
// iSCSI target needs LIO and the NFS server nfsd, which a host running
// kiln serve may lack (or already use for its own exports).
func optIn(config.Config) bool { return false }

// networkManaged: netconf runs when the config lists interfaces (otherwise
// PID 1's bootnet brings every NIC up with DHCP and there is no firewall).
func networkManaged(c config.Config) bool { return c.Network.Configured() }

// provisioning services are on by default once the config provisions a subnet.
func provisioning(c config.Config) bool { return len(c.Provisioning.Subnets) > 0 }

func findService(name string) (catalogEntry, bool) {
	i := slices.IndexFunc(serviceCatalog(), func(e catalogEntry) bool { return e.name == name })
	if i < 0 {
		return catalogEntry{}, false
	}
	return serviceCatalog()[i], true
}

func serviceNames() []string {
	var names []string
	for _, e := range serviceCatalog() {
		names = append(names, e.name)
	}
	return names
}

// serviceSpecs turns the catalog and cfg into the supervisor's specs; each
// service runs "kiln service <name> --config F --state DIR --run DIR". Paths
// must be absolute (services run in /).
func serviceSpecs(cfg config.Config, configPath, stateDir, runDir string) ([]supervisor.Spec, error) {
	if err := checkServiceNames(cfg); err != nil {
		return nil, err
	}
	for _, p := range []string{configPath, stateDir, runDir} {
		if p != "" && !filepath.IsAbs(p) {
			return nil, fmt.Errorf("path %q is not absolute", p)
		}
	}
	var specs []supervisor.Spec
	for _, e := range serviceCatalog() {
		args := []string{"service", e.name}
		if configPath != "" {
			args = append(args, "--config", configPath)
		}
		args = append(args, "--state", stateDir, "--run", runDir)
		deps := slices.Clone(e.deps)
		for _, a := range e.after {
			if o, ok := findService(a); ok && cfg.Enabled(a, o.enabled(cfg)) {
				deps = append(deps, a)
			}
		}
		specs = append(specs, supervisor.Spec{
			Name:    e.name,
			Args:    args,
			Deps:    deps,
			Enabled: cfg.Enabled(e.name, e.enabled(cfg)),
		})
	}
	return specs, nil
}
