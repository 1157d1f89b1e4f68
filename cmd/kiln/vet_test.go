package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

// TestVetCLI starts, lists and shows a run through the API; a held run is
// reached through kiln vet tunnel (here an echo server stands in for the
// agent's SSH server) and released.
func TestVetCLI(t *testing.T) {
	a := newAppliance(t)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	cred := []string{"--credentials", creds}
	if _, errOut, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin")...); err != nil {
		t.Fatalf("login = %v\n%s", err, errOut)
	}
	ctx := context.Background()
	if _, err := a.db.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}, BootProfile: store.BootVet,
		ExpectedSpec: "expect:\n  - fact: memory.installed_bytes\n    min: 64GiB\n"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, runVet, "", append([]string{"start", "nope"}, cred...)...); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("vet start of an unknown host = %v", err)
	}
	if _, _, err := runCmd(t, runVet, "", append([]string{"start", "pc-01", "--profile", "fast"}, cred...)...); err == nil || !strings.Contains(err.Error(), "profile") {
		t.Errorf("vet start with a bad profile = %v", err)
	}
	if _, _, err := runCmd(t, runVet, "pc-02\n", append([]string{"start", "pc-01", "--wipe"}, cred...)...); err == nil || !strings.Contains(err.Error(), "confirm_wipe") {
		t.Errorf("vet start --wipe with the wrong name = %v", err)
	}
	out, _, err := runCmd(t, runVet, "", append([]string{"start", "pc-01", "--hold"}, cred...)...)
	if err != nil || !strings.Contains(out, "of pc-01: queued") || !strings.Contains(out, "hold on failure") {
		t.Fatalf("vet start = %q, %v", out, err)
	}
	runs, _ := a.db.ListVetRuns(ctx, store.VetRunFilter{Host: "pc-01"})
	if len(runs) != 1 {
		t.Fatalf("runs = %+v", runs)
	}
	r := runs[0]
	id := strconv.FormatInt(r.ID, 10)
	if out, _, err := runCmd(t, runVet, "", append([]string{"list"}, cred...)...); err != nil || !strings.Contains(out, id+"    pc-01  queued") {
		t.Errorf("vet list = %q, %v", out, err)
	}

	// The agent fails the run and holds the host; an echo server plays its
	// SSH server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	orch := orchestrator.New(a.db, config.Vetting{}, a.state, nil)
	orch.SetHoldPort(ln.Addr().(*net.TCPAddr).Port)
	if _, err := orch.Hello(ctx, id, protocol.Hello{Source: netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := orch.Record(ctx, id, &protocol.Report{RunID: id, Verdict: verdict.Fail,
		Findings: []verdict.Finding{{Source: "spec", Status: verdict.Fail, Message: "memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"}}}); err != nil {
		t.Fatal(err)
	}
	if err := orch.Record(ctx, id, &protocol.Events{Events: []protocol.Event{{Seq: 1, Kind: protocol.EventHolding, Addr: ln.Addr().String(), HostKey: "ssh-ed25519 AAAAC3"}}}); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, runVet, "", append([]string{"show", id}, cred...)...)
	if err != nil || !strings.Contains(out, "holding") || !strings.Contains(out, "memory.installed_bytes: expected ≥ 64 GiB") || !strings.Contains(out, "kiln vet ssh "+id) {
		t.Errorf("vet show of the held run = %q, %v", out, err)
	}
	out, _, err = runCmd(t, runVet, "hello through the appliance\n", append([]string{"tunnel", id}, cred...)...)
	if err != nil || out != "hello through the appliance\n" {
		t.Errorf("vet tunnel echoed %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runVet, "", append([]string{"report", id}, cred...)...); err != nil || !strings.Contains(out, `"memory.installed_bytes`) {
		t.Errorf("vet report = %.200q, %v", out, err)
	}
	if out, _, err := runCmd(t, runVet, "", append([]string{"release", id}, cred...)...); err != nil || !strings.Contains(out, ": failed") {
		t.Errorf("vet release = %q, %v", out, err)
	}
	if _, _, err := runCmd(t, runVet, "", append([]string{"tunnel", id}, cred...)...); err == nil || !strings.Contains(err.Error(), "not holding") {
		t.Errorf("vet tunnel after the release = %v", err)
	}
}
