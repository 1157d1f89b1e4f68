package unixhttp

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

func TestClientOverSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusTeapot, map[string]string{"path": r.URL.Path, "host": r.Host})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	resp, err := Client(sock).Get("http://supervisor/v1/status")
	if err != nil {
		t.Fatalf("GET over the socket: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	want := "{\n  \"host\": \"supervisor\",\n  \"path\": \"/v1/status\"\n}\n"
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("Content-Type") != "application/json" || string(b) != want {
		t.Errorf("reply = %d %q %q, want 418 application/json %q", resp.StatusCode, resp.Header.Get("Content-Type"), b, want)
	}
}

func TestClientMissingSocket(t *testing.T) {
	if _, err := Client(filepath.Join(t.TempDir(), "none.sock")).Get("http://netconf/v1/status"); err == nil {
		t.Error("GET over a missing socket succeeded, want an error")
	}
}
