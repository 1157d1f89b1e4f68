package config

import (
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

const testBackupKey = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

func TestBackupSection(t *testing.T) {
	c, err := Parse(strings.NewReader("backup:\n  every: 24h\n  keep: 3\n  public_key: " + testBackupKey + "\n  push_url: https://backups.example/kiln/\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Backup; b.Every != 24*time.Hour || b.Kept() != 3 || b.PushURL != "https://backups.example/kiln/" {
		t.Errorf("Parse(backup) = %+v", b)
	}
	if k := (Backup{}).Kept(); k != DefaultBackupKeep {
		t.Errorf("Backup{}.Kept() = %d, want %d", k, DefaultBackupKeep)
	}
	for _, tc := range []struct{ yaml, field, fix string }{
		{"backup:\n  every: 10m\n  public_key: " + testBackupKey + "\n", "backup.every", "1h or more"},
		{"backup:\n  keep: -1\n", "backup.keep", "1 to 1000"},
		{"backup:\n  every: 24h\n", "backup.public_key", "kiln backup keygen"},
		{"backup:\n  public_key: AGE-SECRET-KEY-1QQQ\n", "backup.public_key", "never the AGE-SECRET-KEY"},
		{"backup:\n  every: 24h\n  public_key: " + testBackupKey + "\n  push_url: sftp://x/y\n", "backup.push_url", "accepts PUT"},
		{"backup:\n  public_key: " + testBackupKey + "\n  push_url: https://x/y\n", "backup.push_url", "backup.every too"},
	} {
		_, err := Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") || !strings.Contains(err.Error(), tc.fix) {
			t.Errorf("Parse(%q) = %v, want an error naming %s and saying %q", tc.yaml, err, tc.field, tc.fix)
		}
	}
}

// TestAgeRecipient holds the config's own check to what filippo.io/age
// accepts: generated keys pass, any one changed character fails.
func TestAgeRecipient(t *testing.T) {
	for range 20 {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		key := id.Recipient().String()
		if !ageRecipient(key) {
			t.Errorf("ageRecipient(%q) = false for a key age made", key)
		}
		for i := 4; i < len(key); i++ {
			bad := []byte(key)
			bad[i] = "qp"[boolInt(bad[i] == 'q')]
			if _, ageErr := age.ParseX25519Recipient(string(bad)); ageRecipient(string(bad)) != (ageErr == nil) {
				t.Errorf("ageRecipient(%q) = %v, age says %v", bad, ageRecipient(string(bad)), ageErr)
			}
		}
	}
	for _, s := range []string{"", "age1", strings.ToUpper(testBackupKey), "AGE-SECRET-KEY-1QQQ", testBackupKey + "q"} {
		if ageRecipient(s) {
			t.Errorf("ageRecipient(%q) = true", s)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
