package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/protocol"
)

// TestReadRoutesLeakNoSecret walks every route a read-scope token may call
// (the event streams included) over a database holding one of each secret
// kiln keeps — host and run tokens and their hashes, a held run's SSH
// private key, password, session and API token hashes, a boot event as the
// DHCP service records an iPXE client's ACK, an iSCSI initiator's sealed
// CHAP secrets (mutual ones too) — and greps each answer for
// every secret the database holds (store.Secrets).
func TestReadRoutesLeakNoSecret(t *testing.T) {
	ts := newTestServer(t, withVetting)
	ctx := context.Background()
	const mac = "52:54:00:00:00:01"
	h, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{mac}, BootProfile: store.BootVet})
	if err != nil {
		t.Fatal(err)
	}
	// What the DHCP service stores for an iPXE client's ACK (the script URL
	// with the host's token) after what httpboot stored for its
	// previous script (the ACK is the host's last_event).
	for _, e := range []store.BootEvent{
		{MAC: mac, Host: h.Name, Kind: store.EventScript, Detail: "profile vet"},
		{MAC: mac, Host: h.Name, Kind: store.EventDHCPAck, Detail: "ip=10.0.0.100 subnet=lab file=http://10.0.0.1:8080/boot/52-54-00-00-00-01.ipxe?token=" + h.Token + " arch=7 ipxe"},
	} {
		if err := ts.db.AddBootEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	a := ts.admin()
	readTok := ts.userWithToken("viewer", store.RoleAdmin, store.RoleRead)
	r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", as: a, body: map[string]any{"host": "pc-01", "hold": true}})
	if r.code != http.StatusCreated {
		t.Fatalf("starting a run = %d %s", r.code, r.body)
	}
	run, err := ts.db.ActiveVetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	runID := itoa(run.ID)
	if _, err := ts.o.Vetting.Hello(ctx, runID, protocol.Hello{Protocol: protocol.Version, Addrs: []string{"10.0.0.100/24"}}); err != nil {
		t.Fatal(err)
	}
	if err := ts.o.Vetting.Record(ctx, runID, &protocol.Events{Events: []protocol.Event{{Seq: 1, Kind: protocol.EventStageStart, Stage: "cpu"}}}); err != nil {
		t.Fatal(err)
	}
	// pc-01's iSCSI initiator with mutual CHAP, sealed by the iscsi
	// service's own key (the store cannot open it: its clear text is added).
	m, err := iscsi.OpenManager(ctx, ts.db, ts.stateDir, "hall.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := m.SetInitiator(ctx, "pc-01", "", true)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := ts.db.Secrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, store.Secret{Column: "iscsi_initiators.chap_sealed (opened)", Value: creds.Secret},
		store.Secret{Column: "iscsi_initiators.mutual_sealed (opened)", Value: creds.MutualSecret})
	kinds := map[string]bool{}
	for _, s := range secrets {
		kinds[s.Column] = true
	}
	for _, c := range []string{"hosts.token", "vet_runs.token", "vet_runs.token_hash", "vet_runs.ssh_private", "users.password_hash", "sessions.id_hash", "api_tokens.secret_hash",
		"iscsi_initiators.chap_sealed", "iscsi_initiators.mutual_sealed"} {
		if !kinds[c] {
			t.Fatalf("the database holds no %s: the test would prove nothing about it", c)
		}
	}
	fill := strings.NewReplacer("{name}", "pc-01", "{id}", runID)
	walked := 0
	for _, rt := range ts.Routes() {
		if rt.Method != "GET" || rt.Scope.rank() > ScopeRead.rank() {
			continue
		}
		path := fill.Replace(rt.Path)
		if rt.Path == "/api/v1/services/{name}/logs" {
			path = "/api/v1/services/mgmt/logs"
		}
		var body string
		if rt.RawResponse == "text/event-stream" {
			// Replay from the start until the stream has sent every boot event
			// (two) or the agent's event.
			want := map[string]string{"/api/v1/events": "event: boot", "/api/v1/vetting/stream": "event: agent"}[rt.Path]
			n := map[string]int{"/api/v1/events": 2, "/api/v1/vetting/stream": 1}[rt.Path]
			body = readStream(t, ts, path, readTok, want, n)
		} else {
			r := ts.do(req{method: "GET", path: path, token: readTok})
			if r.code != http.StatusOK {
				t.Errorf("GET %s with a read token = %d %s", path, r.code, r.body)
			}
			body = string(r.body)
		}
		walked++
		for _, s := range secrets {
			if strings.Contains(body, s.Value) {
				t.Errorf("GET %s shows %s (%.12s…)", path, s.Column, s.Value)
			}
		}
		if rt.Path == "/api/v1/hosts" && !strings.Contains(body, `"last_event"`) {
			t.Errorf("GET /api/v1/hosts has no last_event: the walk would not see boot events there")
		}
	}
	if walked < 15 {
		t.Errorf("walked %d read routes; the router's table is not being read", walked)
	}
}

// readStream reads an event stream from its start (Last-Event-ID 0) until
// the n-th event line starting with want and its data, and returns what came.
func readStream(t *testing.T, ts *testServer, path, token, want string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, _ := http.NewRequestWithContext(ctx, "GET", ts.ts.URL+path, nil)
	r.Header.Set("Accept", "text/event-stream")
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Last-Event-ID", "0")
	res, err := ts.hc.Do(r)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s = %d %s", path, res.StatusCode, b)
	}
	var b strings.Builder
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), want) {
			if n--; n > 0 {
				continue
			}
			// The data line after the event line.
			if sc.Scan() {
				b.WriteString(sc.Text() + "\n")
			}
			return b.String()
		}
	}
	t.Errorf("GET %s ended without %q: %s", path, want, b.String())
	return b.String()
}
