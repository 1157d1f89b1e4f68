// Package config owns kiln's one declarative appliance config file (YAML): its
// schema, defaults, strict parsing and validation. Errors name the field and the fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole appliance configuration.
type Config struct {
	// Hostname of the appliance.
	Hostname string `yaml:"hostname"`
	// Management is the operator-facing HTTP(S) endpoint.
	Management Management `yaml:"management"`
	// Services switches services on or off by name; a missing entry means the default.
	Services     map[string]Service `yaml:"services"`
	Provisioning Provisioning       `yaml:"provisioning"`
	Network      Network            `yaml:"network"`
	Firewall     Firewall           `yaml:"firewall"`
	API          API                `yaml:"api"`
	Update       Update             `yaml:"update"`
	Vetting      Vetting            `yaml:"vetting"`
	Backup       Backup             `yaml:"backup"`
	NTP          NTP                `yaml:"ntp"`
	Syslog       Syslog             `yaml:"syslog"`
}

// Management configures the management endpoint.
type Management struct {
	// HTTPSPort serves the API/UI over TLS (0 disables HTTPS).
	HTTPSPort int `yaml:"https_port"`
	// HTTPPort redirects to HTTPS, except /healthz (0 disables HTTP).
	HTTPPort int `yaml:"http_port"`
	// Listen is the address to bind; empty means all addresses.
	Listen string `yaml:"listen"`
}

// Service is the per-service switch.
type Service struct {
	Enabled *bool `yaml:"enabled"`
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Hostname:   "kiln",
		Management: Management{HTTPSPort: 443, HTTPPort: 80},
	}
}

// Enabled reports whether the named service is on; def is its default.
func (c Config) Enabled(name string, def bool) bool {
	if s, ok := c.Services[name]; ok && s.Enabled != nil {
		return *s.Enabled
	}
	return def
}

// FieldError is a validation error aimed at an operator.
type FieldError struct {
	Field   string // dotted path, e.g. "management.https_port"
	Problem string // what is wrong
	Fix     string // what to do
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.Field, e.Problem, e.Fix)
}

// Errors is a list of validation errors.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("invalid config")

// Parse decodes YAML strictly (unknown fields are errors) over the defaults and validates it.
func Parse(r io.Reader) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v (check indentation and field names against docs/config.md)", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Load reads and parses a config file. A missing path returns the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate checks the whole config and returns every problem found.
func (c Config) Validate() error {
	var errs Errors
	add := func(field, problem, fix string) { errs = append(errs, &FieldError{field, problem, fix}) }
	if !validHostname(c.Hostname) {
		add("hostname", fmt.Sprintf("%q is not a valid host name", c.Hostname), "use 1-63 letters, digits and '-', not starting or ending with '-'")
	}
	for field, p := range map[string]int{"management.https_port": c.Management.HTTPSPort, "management.http_port": c.Management.HTTPPort} {
		if p < 0 || p > 65535 {
			add(field, fmt.Sprintf("port %d is out of range", p), "use 1-65535, or 0 to disable")
		}
	}
	if c.Management.HTTPSPort != 0 && c.Management.HTTPSPort == c.Management.HTTPPort {
		add("management.http_port", fmt.Sprintf("port %d is also management.https_port", c.Management.HTTPPort), "give HTTP and HTTPS different ports")
	}
	c.Provisioning.validate(add)
	c.validateListeners(add)
	c.validateNetwork(add)
	c.API.validate(add)
	c.validateTrust(add)
	c.Update.validate(add)
	c.Vetting.validate(add)
	c.Backup.validate(add)
	c.NTP.validate(add)
	c.Syslog.validate(add)
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrInvalid, errs)
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for _, r := range h {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
