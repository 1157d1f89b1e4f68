package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
)

type backend struct{}

func (backend) Hello(context.Context, string, protocol.Hello) (protocol.Assignment, error) {
	// A CPU-only profile keeps the test short.
	return protocol.Assignment{Profile: "quick", Spec: "expect:\n  - fact: cpu.threads\n    min: 100000\n",
		Settings: settings()}, nil
}

func (backend) Record(context.Context, string, protocol.Message) error { return nil }

func TestRunFromCmdline(t *testing.T) {
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-9", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: backend{}}))
	defer srv.Close()
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(cmdline, []byte("initrd=initrd kiln.mode=vet kiln.server="+srv.URL+" kiln.host=n9 kiln.mac=52:54:00:00:00:09 kiln.token="+tok+" console=ttyS0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, []string{"--cmdline", cmdline}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	got := out.String()
	if !strings.Contains(got, "kiln-agent: run run-9 verdict FAIL\n") ||
		!strings.Contains(got, "kiln-agent: finding: FAIL spec: cpu.threads: expected ≥ 100000") {
		t.Errorf("output = %q, want the run's FAIL verdict and its finding", got)
	}
}

func TestUsage(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(empty, []byte("console=ttyS0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--bogus"}, {"extra"}, {"--cmdline", empty}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) error = %v, want a usage error", args, err)
		}
	}
}

func settings() *stages.Profile {
	return &stages.Profile{Name: "cpu", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}}
}
