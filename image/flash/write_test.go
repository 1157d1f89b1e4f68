package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock advances a second on every call.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func randomImage(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// flipper is a device that reads one byte back wrong (a failing or fake stick).
type flipper struct {
	*os.File
	at int64
}

func (f flipper) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if f.at >= off && f.at < off+int64(n) {
		p[f.at-off] ^= 0x01
	}
	return n, err
}

func TestWrite(t *testing.T) {
	img := randomImage(10<<20 + 4096)
	sum := sha256.Sum256(img)
	p := filepath.Join(t.TempDir(), "dev")
	// A device larger than the image with an old backup GPT at its end.
	old := bytes.Repeat([]byte{0xee}, 16<<20)
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var reports []Progress
	clock := &fakeClock{}
	res, err := Write(context.Background(), dev, bytes.NewReader(img), int64(len(img)), Options{
		Chunk: 1 << 20, SyncEvery: 3 << 20, DevSize: 16 << 20, Now: clock.Now,
		Report: func(p Progress) { reports = append(reports, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != hex.EncodeToString(sum[:]) || res.Bytes != int64(len(img)) {
		t.Errorf("Write = %+v, want sha256 %x and %d bytes", res, sum, len(img))
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got[:len(img)], img) {
		t.Error("device does not hold the image")
	}
	if !bytes.Equal(got[len(img):15<<20], old[len(img):15<<20]) {
		t.Error("bytes between the image and the last MiB changed")
	}
	if !bytes.Equal(got[15<<20:], make([]byte, 1<<20)) {
		t.Error("last MiB of the device (a stale backup GPT) was not zeroed")
	}
	// 11 writes of 1 MiB and one of 4 KiB, then as many verify reads.
	if len(reports) != 22 {
		t.Errorf("got %d progress reports, want 22", len(reports))
	}
	var last Progress
	for _, r := range reports {
		if r.Phase == last.Phase && r.Done <= last.Done {
			t.Errorf("progress went backwards: %+v after %+v", r, last)
		}
		last = r
	}
	if w := reports[10]; w.Phase != "writing" || w.Done != int64(len(img)) {
		t.Errorf("last write report %+v, want writing done", w)
	}
	if last.Phase != "verifying" || last.Done != int64(len(img)) || last.Rate() <= 0 {
		t.Errorf("last report %+v, want verifying done with a rate", last)
	}
}

func TestWriteVerifyFails(t *testing.T) {
	img := randomImage(3 << 20)
	p := filepath.Join(t.TempDir(), "dev")
	os.WriteFile(p, nil, 0o644)
	dev, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	_, err = Write(context.Background(), flipper{dev.File, 2<<20 + 17}, bytes.NewReader(img), int64(len(img)), Options{})
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("Write to a device that reads back wrong = %v, want ErrVerify", err)
	}
}

func TestWriteShortImage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dev")
	os.WriteFile(p, nil, 0o644)
	dev, _ := Open(p)
	defer dev.Close()
	_, err := Write(context.Background(), dev, bytes.NewReader(make([]byte, 100)), 200, Options{})
	if err == nil || !strings.Contains(err.Error(), "reading the image") {
		t.Errorf("Write with a short source = %v, want a read error", err)
	}
}

func TestWriteCancelled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dev")
	os.WriteFile(p, nil, 0o644)
	dev, _ := Open(p)
	defer dev.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Write(ctx, dev, bytes.NewReader(make([]byte, 1<<20)), 1<<20, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBar(t *testing.T) {
	var term bytes.Buffer
	b := &Bar{W: &term, Terminal: true, Width: 10}
	b.Update(Progress{Phase: "writing", Done: 512 << 20, Total: 1024 << 20, Elapsed: 10 * time.Second})
	want := "\rwriting   512.0 MiB / 1.0 GiB    50% [=====>    ] 51.2 MiB/s  0:10 left\x1b[K"
	if term.String() != want {
		t.Errorf("terminal bar = %q, want %q", term.String(), want)
	}
	var log bytes.Buffer
	lb := &Bar{W: &log}
	for done := int64(0); done <= 100; done += 5 {
		lb.Update(Progress{Phase: "writing", Done: done, Total: 100, Elapsed: time.Second})
	}
	if n := strings.Count(log.String(), "\n"); n != 11 {
		t.Errorf("log bar printed %d lines for 0..100%%, want 11 (one per 10%%):\n%s", n, log.String())
	}
}

func TestCheckImage(t *testing.T) {
	dir := t.TempDir()
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	qcow := append([]byte("QFI\xfb"), make([]byte, 4096)...)
	vmdk := append([]byte("KDMV"), make([]byte, 4096)...)
	tests := map[string]struct {
		data []byte
		ok   bool
		hint string
	}{
		"raw":   {mbr, true, ""},
		"qcow2": {qcow, false, "qcow2"},
		"vmdk":  {vmdk, false, "VM disk"},
		"blank": {make([]byte, 4096), false, "no boot sector"},
		"tiny":  {[]byte("x"), false, "too short"},
	}
	for name, tt := range tests {
		p := filepath.Join(dir, name)
		os.WriteFile(p, tt.data, 0o644)
		f, _ := os.Open(p)
		n, err := CheckImage(f)
		f.Close()
		if tt.ok && (err != nil || n != int64(len(tt.data))) {
			t.Errorf("CheckImage(%s) = %d, %v, want %d, nil", name, n, err, len(tt.data))
		}
		if !tt.ok && (!errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tt.hint)) {
			t.Errorf("CheckImage(%s) = %v, want ErrImage mentioning %q", name, err, tt.hint)
		}
	}
}
