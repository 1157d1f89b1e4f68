package httpboot

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/store"
)

// TestSANLoginFromStore serves an iscsi host's script through the real
// adapters: the CHAP secrets the iscsi Manager made (and sealed) reach the
// host's own script and nothing else — not another address's answer, not
// the boot events, not the log.
func TestSANLoginFromStore(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	h, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{macA}, BootProfile: store.BootISCSI,
		IPv4: netip.MustParseAddr("10.0.0.50")})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filesRoot(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	san := storeSAN{st: st, stateDir: state, domain: "hall.example", now: now}
	s, err := New(Options{FilesRoot: root, SAN: san}, storeHosts{st: st, now: time.Now}, storeEvents{st}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	script := func(from string) string {
		t.Helper()
		return body(getFrom(s, from+":40000", http.MethodGet, "http://10.0.0.1:8080/boot/"+macA+".ipxe?token="+h.Token))
	}
	refused := func(step, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) || !strings.HasSuffix(got, "exit 1\n") || strings.Contains(got, "sanboot") {
			t.Errorf("%s: script =\n%s\nwant a refusal saying %q", step, got, want)
		}
	}

	refused("no CHAP record", script("10.0.0.50"), "host node1 has no iSCSI CHAP credentials: make them with kiln volumes chap node1")
	m, err := iscsi.OpenManager(ctx, st, state, "hall.example", now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := m.SetInitiator(ctx, "node1", "", true)
	if err != nil {
		t.Fatal(err)
	}
	refused("no volume", script("10.0.0.50"), "host node1 has no iSCSI volume to boot from: create one with kiln volumes create node1/boot")
	if _, err := m.CreateVolume(ctx, "node1", "boot", 1<<20, iscsi.Source{}); err != nil {
		t.Fatal(err)
	}

	got := script("10.0.0.50")
	for _, want := range []string{
		"set initiator-iqn iqn.2026-03.example.hall:initiator:node1\n",
		"set username node1\nset password " + creds.Secret + "\n",
		"set reverse-username kiln\nset reverse-password " + creds.MutualSecret + "\n",
		"sanboot iscsi:10.0.0.1::::iqn.2026-03.example.hall:node1 || goto failed\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("node1's own script =\n%s\nwant %q", got, want)
		}
	}
	secrets := []string{creds.Secret, creds.MutualSecret}
	for _, sec := range secrets {
		if sec == "" {
			t.Fatalf("SetInitiator made an empty secret: %+v", creds)
		}
	}
	other := script("10.0.0.99")
	refused("another address", other, "a script goes only to the address kiln leased or reserved for its machine")

	// A sealing key that is not the one the secrets were sealed with.
	keyPath := filepath.Join(state, "iscsi", iscsi.KeyFile)
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, bytes.Repeat([]byte{7}, len(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("another key", script("10.0.0.50"), "host node1's CHAP secrets do not open with this appliance's key: make new ones with kiln volumes chap node1")

	evs, err := st.BootEvents(ctx, macA, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+"/"+e.Detail)
	}
	want := []string{"script_denied/no iSCSI login", "script_denied/requested from 10.0.0.99, not the MAC's lease or reservation",
		"script/profile iscsi", "script_denied/no iSCSI login", "script_denied/no iSCSI login"}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Errorf("stored boot events = %q, want %q (newest first)", kinds, want)
	}
	t.Log(logs.String())
	for _, sec := range secrets {
		if strings.Contains(logs.String(), sec) || strings.Contains(other, sec) {
			t.Errorf("a CHAP secret (%.4s…) left node1's own script: log or refusal shows it", sec)
		}
		for _, e := range evs {
			if strings.Contains(e.Detail, sec) {
				t.Errorf("boot event %+v shows a CHAP secret", e)
			}
		}
	}
}

func TestSANLoginNeedsDomain(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = storeSAN{st: st, stateDir: t.TempDir(), now: time.Now}.SANLogin(ctx, "node1")
	if want := "no iSCSI login: iSCSI boot needs provisioning.domain set on the appliance (the naming authority of its targets)"; err == nil || err.Error() != want {
		t.Errorf("SANLogin without a domain = %v, want %q", err, want)
	}
}
