package config

import (
	"fmt"
	"net/url"
	"time"

	"filippo.io/age"
)

// Backup configures scheduled backups (see docs/operations.md#backup).
// They are off until Every is set.
type Backup struct {
	// Every is how often a backup is written to <state>/backups; 0 is off.
	// Each appliance runs at its own fixed offset within the period.
	Every time.Duration `yaml:"every"`
	// Keep is how many scheduled backups stay (default 7).
	Keep int `yaml:"keep"`
	// PublicKey (age1…, from kiln backup keygen) encrypts them: the
	// appliance cannot read its own backups back, the key file's owner can.
	PublicKey string `yaml:"public_key"`
	// PushURL, when set, receives each backup by HTTP PUT (the file name is
	// appended when it ends in "/").
	PushURL string `yaml:"push_url"`
}

// DefaultBackupKeep is Keep's default.
const DefaultBackupKeep = 7

// Kept returns Keep or its default.
func (b Backup) Kept() int {
	if b.Keep == 0 {
		return DefaultBackupKeep
	}
	return b.Keep
}

func (b Backup) validate(add func(field, problem, fix string)) {
	if b.Every != 0 && b.Every < time.Hour {
		add("backup.every", fmt.Sprintf("%s is too short", b.Every), "use 1h or more, e.g. 24h, or 0 to turn scheduled backups off")
	}
	if b.Keep < 0 || b.Keep > 1000 {
		add("backup.keep", fmt.Sprintf("%d is out of range", b.Keep), "use 1 to 1000 (0 means the default, 7)")
	}
	if b.Every != 0 && b.PublicKey == "" {
		add("backup.public_key", "missing: scheduled backups need a key", "run kiln backup keygen -o backup.key on your workstation and put the age1… public key it prints here")
	}
	if b.PublicKey != "" {
		if _, err := age.ParseX25519Recipient(b.PublicKey); err != nil {
			add("backup.public_key", fmt.Sprintf("%q is not an age public key", b.PublicKey), "give the age1… line kiln backup keygen printed (never the AGE-SECRET-KEY line)")
		}
	}
	if b.PushURL != "" {
		if u, err := url.Parse(b.PushURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("backup.push_url", "not an http(s) URL", "give a URL that accepts PUT, e.g. https://backups.example/kiln/")
		} else if b.Every == 0 {
			add("backup.push_url", "set without backup.every", "set backup.every too, or remove backup.push_url")
		}
	}
}
