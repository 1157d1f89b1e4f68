package iscsi

// Tier 3g: the iscsi service (Run) against the real kernel, in one guest:
// volumes and CHAP made through the Manager are restored into LIO at
// start, an initiator logs in and reads a golden volume's clone, and a
// restart of the service keeps the session and changes nothing.

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/qemu/guest"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

func TestService(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"target_core_file", "iscsi_target_mod", "iscsi_tcp", "dummy"}}) {
		return
	}
	needTools(t)
	ctx := context.Background()
	// kis-d stands for the provisioning NIC; kis-m for management, which must get no portal.
	for _, args := range [][]string{
		{"ip", "link", "add", "kis-d", "type", "dummy"}, {"ip", "addr", "add", "10.78.0.1/24", "dev", "kis-d"}, {"ip", "link", "set", "kis-d", "up"},
		{"ip", "link", "add", "kis-m", "type", "dummy"}, {"ip", "addr", "add", "192.168.78.1/24", "dev", "kis-m"}, {"ip", "link", "set", "kis-m", "up"},
	} {
		if out, err := run(args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	state := t.TempDir()
	cfg := config.Config{Provisioning: config.Provisioning{Domain: "hall.example",
		Subnets: []config.Subnet{{Name: "prov", Interface: "kis-d", CIDR: "10.78.0.0/24", Mode: config.ModeAuthoritative}}}}

	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}, BootProfile: store.BootISCSI}); err != nil {
		t.Fatal(err)
	}
	sealer, err := OpenSealer(filepath.Join(state, "iscsi", KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	names, err := NamesFor(ctx, st, cfg.Provisioning.Domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{Store: st, Files: Files{Dir: filepath.Join(state, "iscsi", "volumes")}, Sealer: sealer, Names: names}
	golden := bytes.Repeat([]byte("kiln golden image\n"), 1<<20/18)
	if _, err := m.CreateVolume(ctx, "", "gold", 4<<20, Source{Image: bytes.NewReader(golden), ImageName: "gold.raw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateVolume(ctx, "node1", "boot", 0, Source{Volume: "gold"}); err != nil {
		t.Fatal(err)
	}
	creds, err := m.SetInitiator(ctx, "node1", "", true)
	if err != nil {
		t.Fatal(err)
	}

	start := func() (stop func()) {
		sctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		done := make(chan error, 1)
		env := svc.Env{Config: cfg, StateDir: state, RunDir: t.TempDir(), Ready: sync1(ready),
			Logger: testlog.New(t, slog.LevelInfo).With("component", "iscsi")}
		go func() { done <- Run(sctx, env) }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("the service ended before it was ready: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("the service was not ready within 60 s")
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("the service returned %v", err)
			}
		}
	}
	stop := start()
	cfs := Configfs{Root: DefaultRoot, Prefix: names.Prefix}
	defer func() {
		iscsiadm(t, "-m", "node", "--logoutall=all")
		apply(cfs, State{})
	}()

	have, err := cfs.Observe()
	if err != nil {
		t.Fatal(err)
	}
	if len(have.Targets) != 1 || len(have.Targets[0].Portals) != 1 || have.Targets[0].Portals[0].String() != "10.78.0.1:3260" {
		t.Fatalf("after start LIO holds %+v; want node1's target on the provisioning address only", have.Targets)
	}
	setInitiatorName(t, creds.IQN)
	if out, err := run("iscsid"); err != nil {
		t.Fatalf("iscsid: %v\n%s", err, out)
	}
	portal := "10.78.0.1:3260"
	if out, err := iscsiadm(t, "-m", "discovery", "-t", "st", "-p", portal); err != nil || !strings.Contains(out, creds.Target) {
		t.Fatalf("discovery = %v\n%s", err, out)
	}
	setCHAP(t, "default", creds.Target, portal, CHAP{UserID: creds.User, Password: creds.Secret, MutualUserID: creds.MutualUser, MutualPassword: creds.MutualSecret}, "")
	if out, err := iscsiadm(t, "-m", "node", "-T", creds.Target, "-p", portal, "--login"); err != nil {
		t.Fatalf("login with the credentials shown once: %v\n%s", err, out)
	}
	disk := diskWithSerial(t, Serial("node1", "boot"))
	readHead := func() []byte {
		f, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 18)
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := readHead(); !bytes.Equal(got, golden[:18]) {
		t.Errorf("the clone of the golden volume starts with %q over iSCSI, want %q", got, golden[:18])
	}

	t.Run("restart keeps the state", func(t *testing.T) {
		stop()
		if st2, err := cfs.Observe(); err != nil || len(st2.Targets) != 1 {
			t.Errorf("after the service stopped LIO holds %+v, %v; want the target kept", st2, err)
		}
		stop = start()
		c := &Controller{Store: st, Sealer: sealer, Files: m.Files, Configfs: cfs, Names: names,
			Subnets: []netip.Prefix{cfg.Provisioning.Subnets[0].Prefix()}, Port: DefaultPort, Logger: testlog.New(t, slog.LevelInfo)}
		if p, err := c.Sync(ctx); err != nil || len(p) != 0 {
			t.Errorf("a sync after the restart applied:\n%s%v; want nothing", p, err)
		}
		if got := readHead(); !bytes.Equal(got, golden[:18]) {
			t.Errorf("after the restart the session reads %q", got)
		}
	})

	t.Run("delete unexports", func(t *testing.T) {
		iscsiadm(t, "-m", "node", "--logoutall=all")
		if err := m.DeleteVolume(ctx, "node1", "boot", "node1/boot"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if s, err := cfs.Observe(); err == nil && len(s.Targets) == 0 && len(s.Backstores) == 0 {
				return
			}
		}
		t.Errorf("the deleted volume's LUN and target are still in LIO")
	})
	stop()
}

// sync1 returns a Ready func closing ch once.
func sync1(ch chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}
