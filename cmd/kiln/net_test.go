package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/netconf"
)

// TestNetCommand drives "kiln net" against a netconf API on a socket; the
// service applies with a fake (no root needed).
func TestNetCommand(t *testing.T) {
	sys, err := netconf.OpenSystem(netns.None())
	if err != nil {
		t.Skipf("no rtnetlink: %v", err)
	}
	defer sys.Close()
	var applied []string
	g := netconf.NewGuard(func(_ context.Context, c config.Config) (netconf.Result, error) {
		applied = append(applied, c.Hostname)
		return netconf.Result{Plan: netconf.Plan{{Op: netconf.OpUp, Link: "eth9"}}}, nil
	}, netconf.SystemClock{}, nil)
	g.Start(t.Context(), config.Default())
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, netconf.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: netconf.Handler(netconf.NewManager(t.Context(), netconf.ManagerOptions{System: sys}), g)}
	go srv.Serve(ln)
	defer srv.Close()
	file := filepath.Join(dir, "new.yaml")
	os.WriteFile(file, []byte("hostname: tried\n"), 0o644)

	kiln := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"kiln", "net"}, args...), stdio{strings.NewReader(""), &out, &errb})
		return out.String() + errb.String(), err
	}
	for _, tt := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"status", "--run", dir}, "LINK", ""},
		{[]string{"apply", "--run", dir}, "", "--try FILE is required"},
		{[]string{"apply", "--run", dir, "--try", file}, "up eth9", ""},
		{[]string{"status", "--run", dir}, "reverts in", ""},
		{[]string{"confirm", "--run", dir}, "confirmed", ""},
		{[]string{"confirm", "--run", dir}, "", "no trial"},
		{[]string{"status", "--run", t.TempDir()}, "", "is it running?"},
		{[]string{"frob"}, "", "unknown subcommand"},
	} {
		out, err := kiln(tt.args...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("kiln net %v = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out, tt.want) {
			t.Errorf("kiln net %v = %q, %v; want output containing %q", tt.args, out, err, tt.want)
		}
	}
	if _, err := kiln("apply", "--run", dir); !errors.Is(err, errUsage) {
		t.Errorf("kiln net apply without --try = %v, want a usage error", err)
	}
	if got := strings.Join(applied, " "); got != "kiln tried" {
		t.Errorf("applied %q, want \"kiln tried\"", got)
	}
}
