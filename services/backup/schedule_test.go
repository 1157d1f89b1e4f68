package backup

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScheduleKeepsAndPushes: scheduled backups are readable with the
// secret key only, the newest Keep stay, each is PUT to the push URL, and a
// refused push is recorded while the file stays.
func TestScheduleKeepsAndPushes(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	st := populate(t, state)
	file, pub, err := GenerateKeyFile()
	if err != nil {
		t.Fatal(err)
	}
	public, _ := ParseKeyFile([]byte(pub))
	secret, _ := ParseKeyFile(file)

	var mu sync.Mutex
	got := map[string][]byte{} // guarded by mu
	refuse := false            // guarded by mu
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPut || refuse {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got[r.URL.Path] = b
	}))
	defer srv.Close()

	now := testNow
	dir := filepath.Join(state, BackupDirName)
	s := &Schedule{Every: 24 * time.Hour, Keep: 2, Key: public, Dir: dir, ID: "lab1", PushURL: srv.URL + "/kiln/",
		Source: func(t time.Time) Source {
			return Source{StateDir: state, Store: st, Version: "test", Hostname: "lab1", Now: t}
		},
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	var last Status
	for i := range 3 {
		now = testNow.Add(time.Duration(i) * 24 * time.Hour)
		if last = s.Once(ctx); last.Error != "" || last.PushError != "" {
			t.Fatalf("Once #%d = %+v", i, last)
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "kiln-lab1-*"+FileSuffix))
	want := []string{filepath.Join(dir, "kiln-lab1-20261208T150000Z.backup"), filepath.Join(dir, "kiln-lab1-20261209T150000Z.backup")}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("backups kept = %v, want the newest two %v", names, want)
	}
	if len(last.Removed) != 1 || !strings.HasSuffix(last.Removed[0], "20261207T150000Z.backup") {
		t.Errorf("last run removed %v, want the oldest", last.Removed)
	}
	mu.Lock()
	pushed := got["/kiln/kiln-lab1-20261209T150000Z.backup"]
	mu.Unlock()
	onDisk, _ := os.ReadFile(want[1])
	if !bytes.Equal(pushed, onDisk) || len(got) != 3 {
		t.Errorf("pushed %d files; the last one matches the file: %v", len(got), bytes.Equal(pushed, onDisk))
	}
	if _, err := Restore(ctx, bytes.NewReader(onDisk), public, Target{StateDir: filepath.Join(t.TempDir(), "s"), Now: now}); err == nil {
		t.Error("a scheduled backup opened with the public key; only the secret key may open it")
	}
	if _, err := Restore(ctx, bytes.NewReader(onDisk), secret, Target{StateDir: filepath.Join(t.TempDir(), "s"), Now: now}); err != nil {
		t.Errorf("Restore(scheduled backup, secret key) = %v", err)
	}

	mu.Lock()
	refuse = true
	mu.Unlock()
	now = now.Add(24 * time.Hour)
	st4 := s.Once(ctx)
	if st4.Error != "" || !strings.Contains(st4.PushError, "403") || st4.File == "" {
		t.Errorf("Once with a refusing target = %+v, want the file written and the push error recorded", st4)
	}
	rec, err := ReadStatus(dir)
	if err != nil || rec.PushError != st4.PushError || rec.File != st4.File {
		t.Errorf("ReadStatus = %+v, %v; want the last run", rec, err)
	}
}

func TestPruneLeavesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"kiln-a-20261201T000000Z.backup", "kiln-b-20261202T000000Z.backup", "kiln-a-20261203T000000Z.backup", "notes.txt", StatusFileName} {
		writeFile(t, filepath.Join(dir, n), "x", 0o600)
	}
	removed, err := Prune(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if len(removed) != 2 || strings.Join(names, ",") != "kiln-a-20261203T000000Z.backup,notes.txt,status.json" {
		t.Errorf("Prune(keep 1) removed %v, left %v; want the two older backups gone, other files kept", removed, names)
	}
}
