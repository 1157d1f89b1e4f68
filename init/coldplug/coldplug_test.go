package coldplug

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "pci0000:00/0000:00:04.0/modalias"), "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
	write(t, filepath.Join(root, "pci0000:00/0000:00:05.0/modalias"), "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
	write(t, filepath.Join(root, "platform/serial8250/modalias"), "platform:serial8250\n")
	write(t, filepath.Join(root, "platform/empty/modalias"), "\n")
	write(t, filepath.Join(root, "platform/serial8250/uevent"), "DRIVER=serial8250\n")
	got, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "platform:serial8250"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Scan mismatch (-want +got):\n%s", diff)
	}
	if _, err := Scan(filepath.Join(root, "missing")); err == nil {
		t.Error("Scan(missing) = nil error")
	}
}

// busLoader models a bus driver: loading virtio_pci makes a virtio device appear.
type busLoader struct {
	t      *testing.T
	root   string
	loaded map[string]bool
}

func (b *busLoader) LoadAlias(a string) ([]string, error) {
	switch {
	case a == "pci:v00001AF4d00001001" && !b.loaded["virtio_pci"]:
		b.loaded["virtio_pci"] = true
		write(b.t, filepath.Join(b.root, "pci/virtio0/modalias"), "virtio:d00000002v00001AF4")
		return []string{"virtio_pci"}, nil
	case a == "virtio:d00000002v00001AF4" && !b.loaded["virtio_blk"]:
		b.loaded["virtio_blk"] = true
		return []string{"virtio_blk"}, nil
	}
	return nil, nil
}

func TestSettle(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "pci/modalias"), "pci:v00001AF4d00001001")
	l := &busLoader{t: t, root: root, loaded: map[string]bool{}}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	got, err := Settle(context.Background(), root, l, log, 5, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"virtio_pci", "virtio_blk"}, got); diff != "" {
		t.Errorf("Settle mismatch (-want +got):\n%s", diff)
	}
}

func TestParseUevent(t *testing.T) {
	msg := "add@/devices/pci0000:00/0000:00:03.0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:03.0\x00SUBSYSTEM=pci\x00MODALIAS=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\x00SEQNUM=1234\x00"
	got, err := ParseUevent([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := Uevent{Action: "add", Devpath: "/devices/pci0000:00/0000:00:03.0", Env: map[string]string{
		"ACTION": "add", "DEVPATH": "/devices/pci0000:00/0000:00:03.0", "SUBSYSTEM": "pci",
		"MODALIAS": "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", "SEQNUM": "1234",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseUevent mismatch (-want +got):\n%s", diff)
	}
	if _, err := ParseUevent([]byte("libudev\x00\xfe\xed")); err == nil {
		t.Error("ParseUevent(libudev message) = nil error")
	}
}

func TestListenStopsOnCancel(t *testing.T) {
	sock, err := Subscribe()
	if err != nil {
		t.Skipf("cannot open a uevent socket here (needs root and netlink): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Listen(ctx, sock, t.TempDir(), &busLoader{t: t, loaded: map[string]bool{}}, slog.New(slog.DiscardHandler))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return within 5s of cancel")
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00MODALIAS=pci:v1\x00"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseUevent(b) })
}
