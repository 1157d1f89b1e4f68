package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
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
		if !ageRecipient(b.PublicKey) {
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

// ageRecipient reports whether s is an age X25519 recipient ("age1" and 32
// bytes in bech32 with a valid checksum). Checked here rather than with
// filippo.io/age so the recovery console, which reads this config, does not
// carry the encryption library; services/backup parses it fully at use.
func ageRecipient(s string) bool {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	if len(s) != 62 || s[:4] != "age1" {
		return false
	}
	// BIP 173 checksum over the expanded human-readable part and the data.
	poly := func(chk uint32, v byte) uint32 {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i, g := range [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3} {
			if top>>i&1 == 1 {
				chk ^= g
			}
		}
		return chk
	}
	chk := uint32(1)
	for _, c := range []byte("age") {
		chk = poly(chk, c>>5)
	}
	chk = poly(chk, 0)
	for _, c := range []byte("age") {
		chk = poly(chk, c&31)
	}
	for _, c := range []byte(s[4:]) {
		v := strings.IndexByte(charset, c)
		if v < 0 {
			return false
		}
		chk = poly(chk, byte(v))
	}
	return chk == 1
}
