package config

import (
	"fmt"
	"time"
)

// Syslog configures the syslog service: where provisioned machines send
// their logs, and how long kiln keeps them.
type Syslog struct {
	// Listen is the UDP and TCP address; empty means DefaultSyslogListen.
	Listen string `yaml:"listen"`
	// MaxAge drops messages older than this (default 30 days).
	MaxAge time.Duration `yaml:"max_age"`
	// MaxSizeMiB keeps the stored messages under this many MiB, dropping
	// the oldest first (default 256).
	MaxSizeMiB int `yaml:"max_size_mib"`
	// Rate is the messages per second kept from one source address, with
	// bursts of five times as many (default 100).
	Rate int `yaml:"rate"`
}

// Defaults of the syslog section.
const (
	DefaultSyslogListen  = ":514"
	DefaultSyslogMaxAge  = 30 * 24 * time.Hour
	DefaultSyslogMaxSize = 256
	DefaultSyslogRate    = 100
)

// SyslogByDefault reports whether the syslog service runs unless
// services.syslog.enabled says otherwise: when there are subnets.
func (c Config) SyslogByDefault() bool { return len(c.Provisioning.Subnets) > 0 }

// ListenAddr returns syslog.listen with the default applied.
func (s Syslog) ListenAddr() string { return or(s.Listen, DefaultSyslogListen) }

// Age returns MaxAge or its default.
func (s Syslog) Age() time.Duration {
	if s.MaxAge == 0 {
		return DefaultSyslogMaxAge
	}
	return s.MaxAge
}

// SizeBytes returns MaxSizeMiB (or its default) in bytes.
func (s Syslog) SizeBytes() int64 {
	if s.MaxSizeMiB == 0 {
		return DefaultSyslogMaxSize << 20
	}
	return int64(s.MaxSizeMiB) << 20
}

// PerSource returns Rate or its default.
func (s Syslog) PerSource() int {
	if s.Rate == 0 {
		return DefaultSyslogRate
	}
	return s.Rate
}

func (s Syslog) validate(add func(field, problem, fix string)) {
	if s.Listen != "" {
		if _, _, err := splitListen(s.Listen); err != nil {
			add("syslog.listen", fmt.Sprintf("%q: %v", s.Listen, err), "use address:port or :port with an IP address, e.g. :514 or 10.0.0.1:514")
		}
	}
	if s.MaxAge != 0 && (s.MaxAge < time.Hour || s.MaxAge > 3650*24*time.Hour) {
		add("syslog.max_age", fmt.Sprintf("%s is out of range", s.MaxAge), "use a duration between 1h and 87600h, e.g. 720h, or 0 for 30 days")
	}
	if s.MaxSizeMiB < 0 || s.MaxSizeMiB > 1<<20 {
		add("syslog.max_size_mib", fmt.Sprintf("%d is out of range", s.MaxSizeMiB), "use 1-1048576, or 0 for 256")
	}
	if s.Rate < 0 || s.Rate > 100000 {
		add("syslog.rate", fmt.Sprintf("%d is out of range", s.Rate), "use 1-100000 messages per second, or 0 for 100")
	}
}
