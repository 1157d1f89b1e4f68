package otahttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/api"
)

type fakeInstaller struct {
	err  error
	got  string
	req  install.Request
	seen int
}

func (f *fakeInstaller) Install(_ context.Context, r io.Reader, req install.Request) (install.Result, error) {
	b, _ := io.ReadAll(r)
	f.got, f.req = string(b), req
	f.seen++
	if f.err != nil {
		return install.Result{}, f.err
	}
	return install.Result{Slot: partitions.SlotB, Version: "v2", Generation: 2, Entry: "kiln-2+3-0.conf", Tries: 3}, nil
}

type fakeSlots struct {
	err        error
	rolledBack []partitions.Slot
}

func (f *fakeSlots) Status(context.Context) (slots.Status, error) {
	return slots.Status{Running: partitions.SlotA, Slots: []slots.Slot{{Name: "a", State: slots.StateGood}, {Name: "b", State: slots.StateEmpty}}}, nil
}

func (f *fakeSlots) RollBack(_ context.Context, to partitions.Slot) error {
	f.rolledBack = append(f.rolledBack, to)
	return f.err
}

// muxMounter mounts without authentication (that is the API's job, tested there).
type muxMounter struct{ *http.ServeMux }

func (m muxMounter) Mount(pattern string, _ api.Scope, h http.Handler) { m.Handle(pattern, h) }

func serve(t *testing.T, h *Handler) *httptest.Server {
	mux := http.NewServeMux()
	h.Mount(muxMounter{mux})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	// Flatten the API's error shape for the checks.
	if e, ok := out["error"].(map[string]any); ok {
		out["error"], out["code"] = e["message"], e["code"]
	}
	return resp.StatusCode, out
}

func TestPush(t *testing.T) {
	var reboots atomic.Int32
	inst := &fakeInstaller{}
	h := &Handler{Installer: inst, Slots: &fakeSlots{}, Reboot: func() error { reboots.Add(1); return nil }, RebootDelay: time.Millisecond}
	srv := serve(t, h)
	code, out := do(t, "POST", srv.URL+"/api/v1/update/bundle?tries=2&reboot=1", "bundle bytes")
	if code != 200 || out["entry"] != "kiln-2+3-0.conf" || out["rebooting"] != true {
		t.Fatalf("push = %d %v", code, out)
	}
	if inst.got != "bundle bytes" || inst.req.Tries != 2 || inst.req.RetryFailed {
		t.Errorf("installer got %q %+v", inst.got, inst.req)
	}
	deadline := time.Now().Add(2 * time.Second)
	for reboots.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if reboots.Load() != 1 {
		t.Errorf("reboots = %d, want 1", reboots.Load())
	}
	if code, out := do(t, "POST", srv.URL+"/api/v1/update/bundle?tries=0", "x"); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), "tries") {
		t.Errorf("push with tries=0 = %d %v", code, out)
	}
}

func TestPushErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", bundle.ErrUnknownKey), 403},
		{fmt.Errorf("x: %w", bundle.ErrSignature), 403},
		{fmt.Errorf("x: %w", bundle.ErrFormat), 400},
		{fmt.Errorf("x: %w", bundle.ErrCorrupt), 400},
		{fmt.Errorf("x: %w", bundle.ErrTooLarge), 413},
		{fmt.Errorf("x: %w", bundle.ErrIncompatible), 422},
		{fmt.Errorf("x: %w", bundle.ErrGeneration), 409},
		{fmt.Errorf("x: %w", oplock.ErrBusy), 409},
		{fmt.Errorf("x: %w", install.ErrNotCommitted), 409},
		{fmt.Errorf("x: %w", install.ErrFailedBefore), 409},
		{errors.New("disk on fire"), 500},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			srv := serve(t, &Handler{Installer: &fakeInstaller{err: tc.err}, Slots: &fakeSlots{}})
			code, out := do(t, "POST", srv.URL+"/api/v1/update/bundle", "b")
			if code != tc.code || out["error"] != tc.err.Error() {
				t.Errorf("push = %d %v, want %d with the error", code, out, tc.code)
			}
		})
	}
}

func TestRollbackAndStatus(t *testing.T) {
	sl := &fakeSlots{}
	srv := serve(t, &Handler{Installer: &fakeInstaller{}, Slots: sl})
	if code, out := do(t, "GET", srv.URL+"/api/v1/update/status", ""); code != 200 || out["running"] != "a" {
		t.Errorf("status = %d %v", code, out)
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/update/rollback", `{"to":"b"}`); code != 200 || len(sl.rolledBack) != 1 {
		t.Errorf("rollback = %d, calls %v", code, sl.rolledBack)
	}
	for _, body := range []string{`{"to":"c"}`, `{"to":"a","force":true}`, `nope`, `{"to":"a","reboot":true}`} {
		if code, _ := do(t, "POST", srv.URL+"/api/v1/update/rollback", body); code != 400 {
			t.Errorf("rollback %s = %d, want 400", body, code)
		}
	}
	sl.err = fmt.Errorf("%w: slot b has no boot entry", slots.ErrRollback)
	if code, out := do(t, "POST", srv.URL+"/api/v1/update/rollback", `{"to":"b"}`); code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "no boot entry") {
		t.Errorf("refused rollback = %d %v", code, out)
	}
}

func TestUnavailable(t *testing.T) {
	srv := serve(t, &Handler{Unavailable: errors.New("not running from a kiln image")})
	for _, r := range [][2]string{{"GET", "/api/v1/update/status"}, {"POST", "/api/v1/update/bundle"}, {"POST", "/api/v1/update/rollback"}} {
		if code, out := do(t, r[0], srv.URL+r[1], "{}"); code != 503 || out["error"] != "not running from a kiln image" {
			t.Errorf("%s %s = %d %v, want 503 with the reason", r[0], r[1], code, out)
		}
	}
}
