package config

import (
	"fmt"
	"net/url"
	"time"
)

// Update configures over-the-air updates (see docs/ota.md). Every field has
// a default; the accessor methods apply them.
type Update struct {
	// Channel is the URL of the update channel's index (JSON naming the
	// newest bundle); empty means no automatic updates (push only).
	Channel string `yaml:"channel"`
	// CheckEvery is how often the channel is checked; each appliance checks
	// at its own fixed offset within the period, so a fleet never updates
	// all at once. Default 24h, at least 1m.
	CheckEvery time.Duration `yaml:"check_every"`
	// Tries is the boot counter of a newly installed slot (default 3, 1-9).
	Tries int `yaml:"tries"`
	// HealthDeadline bounds the health checks of a new version's first boot
	// (services ready, data writable, API answering); default 5m, 10s-1h.
	HealthDeadline time.Duration `yaml:"health_deadline"`
}

// Defaults of the update section.
const (
	DefaultUpdateCheckEvery     = 24 * time.Hour
	DefaultUpdateTries          = 3
	DefaultUpdateHealthDeadline = 5 * time.Minute
)

// Period returns CheckEvery or its default.
func (u Update) Period() time.Duration {
	if u.CheckEvery == 0 {
		return DefaultUpdateCheckEvery
	}
	return u.CheckEvery
}

// BootTries returns Tries or its default.
func (u Update) BootTries() int {
	if u.Tries == 0 {
		return DefaultUpdateTries
	}
	return u.Tries
}

// Deadline returns HealthDeadline or its default.
func (u Update) Deadline() time.Duration {
	if u.HealthDeadline == 0 {
		return DefaultUpdateHealthDeadline
	}
	return u.HealthDeadline
}

func (u Update) validate(add func(field, problem, fix string)) {
	if u.Channel != "" {
		if p, err := url.Parse(u.Channel); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			add("update.channel", fmt.Sprintf("%q is not an http(s) URL", u.Channel), "give the channel index URL, e.g. https://updates.example/kiln/stable.json, or leave it empty")
		}
	}
	if u.CheckEvery != 0 && u.CheckEvery < time.Minute {
		add("update.check_every", fmt.Sprintf("%s is too short", u.CheckEvery), "use 1m or more, e.g. 24h")
	}
	if u.Tries != 0 && (u.Tries < 1 || u.Tries > 9) {
		add("update.tries", fmt.Sprintf("%d is out of range", u.Tries), "use 1 to 9 (3 survives a power cut during the first boot)")
	}
	if u.HealthDeadline != 0 && (u.HealthDeadline < 10*time.Second || u.HealthDeadline > time.Hour) {
		add("update.health_deadline", fmt.Sprintf("%s is out of range", u.HealthDeadline), "use 10s to 1h")
	}
}
