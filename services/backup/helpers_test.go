package backup

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/services/store"
)

// testWorkFactor keeps scrypt cheap in tests; the format stores it.
const testWorkFactor = 10

var testNow = time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)

func testKey(t *testing.T, pass string) Key {
	t.Helper()
	k, err := Passphrase(pass, testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// populate fills a state directory the way a working appliance has it: a
// database with hosts, a lease, users, boot history and a vetting run with
// sealed secrets, plus the files services keep, plus things a backup
// leaves out.
func populate(t *testing.T, dir string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{"52:54:00:00:00:01"}, IPv4: netip.MustParseAddr("10.9.0.11"), BootProfile: store.BootProfile("vet")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateHost(ctx, store.Host{Name: "node2", MACs: []string{"52:54:00:00:00:02"}, Aliases: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.User{{Name: "admin", Role: store.RoleAdmin, PasswordHash: "x"}, {Name: "ops", Role: store.RoleWrite, PasswordHash: "y"}} {
		if _, err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.9.0.100"), MAC: "52:54:00:00:00:09", Subnet: "lan", State: store.LeaseBound, Expires: testNow.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := st.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:01", Host: "node1", Kind: "dhcp", Detail: "offer " + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateVetRun(ctx, store.VetRun{HostID: h.ID, Host: h.Name, State: "booting", Profile: "quick", Token: "run-token-secret", TokenHash: "th1", SSHPrivate: "PRIVATE KEY"}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "mgmt", "tls", "cert.pem"), "CERT", 0o644)
	writeFile(t, filepath.Join(dir, "mgmt", "tls", "key.pem"), "TLSKEY", 0o600)
	writeFile(t, filepath.Join(dir, "api", "bootstrapped"), "1", 0o600)
	writeFile(t, filepath.Join(dir, "iscsi", "chap.key"), string(bytes.Repeat([]byte{7}, 32)), 0o600)
	writeFile(t, filepath.Join(dir, "ota", "state.json"), `{"slot":"a"}`, 0o644)
	writeFile(t, filepath.Join(dir, "vetting", "runs", "1", "report.json"), `{"verdict":"PASS"}`, 0o644)
	// Left out:
	writeFile(t, filepath.Join(dir, "iscsi", "volumes", "node1", "root.img"), "DISK", 0o600)
	writeFile(t, filepath.Join(dir, "ota", "db-snapshot", "kiln.db"), "OLD", 0o600)
	writeFile(t, filepath.Join(dir, "run", "supervisor.sock"), "", 0o600)
	writeFile(t, filepath.Join(dir, BackupDirName, "kiln-1.backup"), "EARLIER", 0o600)
	return st
}
