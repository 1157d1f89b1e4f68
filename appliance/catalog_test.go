package appliance

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/config"
)

func TestServiceSpecs(t *testing.T) {
	cfg := config.Default()
	specs, err := Specs(cfg, "/etc/kiln/kiln.yaml", "/data/state", "/run/kiln")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != len(serviceCatalog()) {
		t.Fatalf("Specs gave %d specs for %d catalog entries", len(specs), len(serviceCatalog()))
	}
	got := strings.Join(specs[0].Args, " ")
	if want := "service mgmt --config /etc/kiln/kiln.yaml --state /data/state --run /run/kiln"; got != want || !specs[0].Enabled {
		t.Errorf("mgmt spec args = %q enabled %v, want %q enabled", got, specs[0].Enabled, want)
	}
	off := false
	cfg.Services = map[string]config.Service{"mgmt": {Enabled: &off}}
	if specs, _ := Specs(cfg, "", "/s", "/r"); specs[0].Enabled || strings.Contains(strings.Join(specs[0].Args, " "), "--config") {
		t.Errorf("mgmt disabled in config = %+v, want disabled and no --config", specs[0])
	}
	cfg.Services = map[string]config.Service{"nope": {Enabled: &off}}
	var fe *config.FieldError
	if _, err := Specs(cfg, "", "/s", "/r"); !errors.As(err, &fe) || fe.Field != "services.nope" {
		t.Errorf("Specs with an unknown service = %v, want a FieldError for services.nope", err)
	}
	if _, err := Specs(config.Default(), "", "state", "/r"); err == nil {
		t.Errorf("Specs with a relative state dir succeeded, want an error")
	}
}

// Every catalog entry must name a valid, unique service with known deps.
func TestCatalogIsValid(t *testing.T) {
	specs, err := Specs(config.Default(), "", "/s", "/r")
	if err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		specs[i].Enabled = true
	}
	if _, err := supervisor.New(specs, supervisor.Options{RunDir: t.TempDir()}); err != nil {
		t.Errorf("supervisor.New(catalog) = %v", err)
	}
}

// Provisioning services wait for netconf only when netconf runs.
func TestServiceSpecsAfterNetconf(t *testing.T) {
	deps := func(cfg config.Config) map[string][]string {
		specs, err := Specs(cfg, "", "/s", "/r")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, s := range specs {
			out[s.Name] = s.Deps
		}
		return out
	}
	cfg := config.Default()
	cfg.Provisioning.Subnets = []config.Subnet{{Name: "a", CIDR: "10.0.0.0/24", Mode: config.ModeOff}}
	if d := deps(cfg)["dhcp"]; len(d) != 0 {
		t.Errorf("dhcp deps without network.interfaces = %v, want none", d)
	}
	cfg.Network.Interfaces = []config.Interface{{Name: "eth0", Role: config.RoleManagement, DHCP: true}}
	if d := deps(cfg)["dhcp"]; !slices.Contains(d, "netconf") {
		t.Errorf("dhcp deps with network.interfaces = %v, want netconf", d)
	}
}
