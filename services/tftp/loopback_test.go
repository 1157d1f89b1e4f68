package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
	"kiln.dev/kiln/internal/testlog"
)

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug).With("component", "tftp")
}

// recorder is an EventSink keeping events in memory.
type recorder struct {
	// mu guards events.
	mu     sync.Mutex
	events []Event
}

func (r *recorder) TFTPEvent(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) find(file string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].File == file {
			return r.events[i], true
		}
	}
	return Event{}, false
}

// ipxeRoot copies Debian's iPXE binaries (resolving symlinks) into a fresh
// root and adds traps: a symlink out of the root, a directory and a FIFO.
func ipxeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	found := 0
	for _, n := range []string{"ipxe.efi", "snponly.efi", "undionly.kpxe"} {
		b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", n))
		if err != nil {
			continue
		}
		found++
		if err := os.WriteFile(filepath.Join(root, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if found == 0 {
		t.Skip("Debian's ipxe package is not installed (/usr/lib/ipxe); apt-get install ipxe")
	}
	if _, err := os.Stat(filepath.Join(root, "ipxe.efi")); err != nil {
		t.Skip("/usr/lib/ipxe/ipxe.efi missing; apt-get install ipxe")
	}
	os.Symlink("/etc/hostname", filepath.Join(root, "escape"))
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	return root
}

type testServer struct {
	addr   string
	port   string
	events *recorder
}

func startServer(t *testing.T, o Options) testServer {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Timeout == 0 {
		o.Timeout = 500 * time.Millisecond
		o.Retries = 2
	}
	rec := &recorder{}
	s, err := New(o, rec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ListenUDP(o.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of cancel")
		}
	})
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("TFTP server not ready within 5s")
	}
	addr := conn.LocalAddr().String()
	_, port, _ := net.SplitHostPort(addr)
	return testServer{addr: addr, port: port, events: rec}
}

func pinGet(t *testing.T, addr, file string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(3)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(file, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

// TestPinClient fetches with pin/tftp v3.1.0's client, an independent Go
// implementation (blksize and tsize; it cannot ask for windowsize).
func TestPinClient(t *testing.T) {
	root := ipxeRoot(t)
	srv := startServer(t, Options{Root: root, MaxBlockSize: 1468})
	want, _ := os.ReadFile(filepath.Join(root, "ipxe.efi"))

	for _, tc := range []struct {
		name, file string
		blksize    int
	}{
		{"default blksize", "ipxe.efi", 0},
		{"blksize 1428", "ipxe.efi", 1428},
		{"blksize above cap", "ipxe.efi", 9000},
		{"leading slash", "/ipxe.efi", 1428},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, size, err := pinGet(t, srv.addr, tc.file, tc.blksize)
			if err != nil {
				t.Fatalf("pin/tftp Receive(%s): %v", tc.file, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("pin/tftp Receive(%s) = %d bytes differing from ipxe.efi (%d bytes)", tc.file, len(got), len(want))
			}
			if size != int64(len(want)) {
				t.Errorf("pin/tftp Receive(%s) tsize = %d, want %d", tc.file, size, len(want))
			}
		})
	}

	// Events are stored after the last ACK (or the ERROR) went out.
	waitEvent(t, srv, "ipxe.efi", func(ev Event) bool {
		return ev.Err == "" && ev.Bytes == int64(len(want)) && ev.Path == "ipxe.efi" && ev.Client.String() == "127.0.0.1"
	})

	for _, tc := range []struct{ file, wantErr string }{
		{"../etc/passwd", "access violation"},
		{"/etc/passwd", "file not found"},
		{"escape", "access violation"},
		{"dir", "file not found"},
		{"missing.efi", "file not found"},
	} {
		t.Run("refuse "+tc.file, func(t *testing.T) {
			_, _, err := pinGet(t, srv.addr, tc.file, 0)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("pin/tftp Receive(%q) error = %v, want %q", tc.file, err, tc.wantErr)
			}
			waitEvent(t, srv, tc.file, func(ev Event) bool { return ev.Err == tc.wantErr })
		})
	}

	t.Run("write refused", func(t *testing.T) {
		c, _ := tftp.NewClient(srv.addr)
		c.SetTimeout(time.Second)
		c.SetRetries(2)
		rf, err := c.Send("upload.bin", "octet")
		if err == nil {
			_, err = rf.ReadFrom(strings.NewReader("data"))
		}
		if err == nil {
			t.Errorf("pin/tftp Send(upload.bin) succeeded, want a refusal")
		}
		if _, err := os.Stat(filepath.Join(root, "upload.bin")); err == nil {
			t.Errorf("write request created upload.bin in the root")
		}
	})
}

// rawRRQ builds a read request with options.
func rawRRQ(file string, opts ...string) []byte {
	b := []byte{0, 1}
	b = append(b, file...)
	b = append(b, 0)
	b = append(b, "octet"...)
	b = append(b, 0)
	for _, o := range opts {
		b = append(b, o...)
		b = append(b, 0)
	}
	return b
}

func parseOACK(t *testing.T, p []byte) map[string]string {
	t.Helper()
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 6 {
		t.Fatalf("reply opcode %v, want OACK (6): %q", p[:min(len(p), 2)], p)
	}
	fields := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
	m := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		m[strings.ToLower(fields[i])] = fields[i+1]
	}
	return m
}

func TestNegotiatedOptions(t *testing.T) {
	root := ipxeRoot(t)
	srv := startServer(t, Options{Root: root, MaxBlockSize: 1468})
	st, _ := os.Stat(filepath.Join(root, "ipxe.efi"))

	for _, tc := range []struct {
		name string
		opts []string
		want map[string]string
	}{
		{"blksize capped, tsize filled, windowsize and timeout granted",
			[]string{"blksize", "9000", "tsize", "0", "windowsize", "8", "timeout", "1"},
			map[string]string{"blksize": "1468", "tsize": strconv.FormatInt(st.Size(), 10), "windowsize": "8", "timeout": "1"}},
		{"windowsize capped", []string{"windowsize", "1000"}, map[string]string{"windowsize": "64"}},
		{"blksize below cap kept", []string{"blksize", "1428"}, map[string]string{"blksize": "1428"}},
		{"wrong tsize replaced by the real size", []string{"tsize", "5"}, map[string]string{"tsize": strconv.FormatInt(st.Size(), 10)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			to, _ := net.ResolveUDPAddr("udp4", srv.addr)
			if _, err := c.WriteToUDP(rawRRQ("ipxe.efi", tc.opts...), to); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 70000)
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("waiting for OACK: %v", err)
			}
			got := parseOACK(t, buf[:n])
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("OACK for %v mismatch (-want +got):\n%s", tc.opts, diff)
			}
			// Abort politely: ERROR code 0.
			c.WriteToUDP([]byte{0, 5, 0, 0, 'b', 'y', 'e', 0}, from)
		})
	}
}

func TestAtftp(t *testing.T) {
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("atftp not installed (apt-get install atftp)")
	}
	root := ipxeRoot(t)
	srv := startServer(t, Options{Root: root, MaxBlockSize: 1468})
	for _, tc := range []struct {
		name     string
		file     string
		opts     []string
		wantBlk  string
		wantWin  string // "" when windowsize is not asked
		wantFail bool
	}{
		{"ipxe.efi blksize 1428 tsize", "ipxe.efi", []string{"blksize 1428", "tsize 0"}, "1428", "", false},
		{"undionly.kpxe blksize above cap", "undionly.kpxe", []string{"blksize 8192", "tsize 0"}, "1468", "", false},
		{"snponly.efi windowsize 4", "snponly.efi", []string{"blksize 1428", "windowsize 4"}, "1428", "4", false},
		{"ipxe.efi windowsize above cap", "ipxe.efi", []string{"blksize 1428", "tsize 0", "windowsize 200"}, "1428", "64", false},
		{"escape refused", "escape", nil, "", "", true},
		{"dotdot refused", "../../etc/passwd", nil, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := os.ReadFile(filepath.Join(root, tc.file))
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"--trace", "--tftp-timeout", "1"}
			for _, o := range tc.opts {
				args = append(args, "--option", o)
			}
			args = append(args, "-g", "-r", tc.file, "-l", out, "127.0.0.1", srv.port)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "atftp", args...)
			trace, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("atftp %v timed out:\n%s", args, trace)
			}
			got, _ := os.ReadFile(out)
			if tc.wantFail {
				if err == nil && len(got) > 0 {
					t.Errorf("atftp %v succeeded with %d bytes, want a refusal\n%s", args, len(got), trace)
				}
				return
			}
			if err != nil {
				t.Fatalf("atftp %v: %v\n%s", args, err, trace)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("atftp got %d bytes differing from %s (%d bytes)", len(got), tc.file, len(want))
			}
			if !strings.Contains(string(trace), "blksize: "+tc.wantBlk) && !strings.Contains(string(trace), "blksize "+tc.wantBlk) {
				t.Errorf("atftp trace lacks negotiated blksize %s:\n%s", tc.wantBlk, firstLines(string(trace), 15))
			}
			if tc.wantWin != "" && !strings.Contains(string(trace), "windowsize: "+tc.wantWin) {
				t.Errorf("atftp trace lacks negotiated windowsize %s:\n%s", tc.wantWin, firstLines(string(trace), 15))
			}
			if tc.wantWin != "" {
				win, _ := strconv.Atoi(tc.wantWin)
				waitEvent(t, srv, tc.file, func(ev Event) bool { return ev.Err == "" && ev.WindowSize == win })
			}
			if testing.Verbose() {
				t.Logf("atftp trace:\n%s", firstLines(string(trace), 8))
			}
		})
	}
}

// TestTFTPHPA fetches with tftp-hpa's client, a plain RFC 1350 client (no
// options: 512-byte blocks, one ACK per block), in octet and netascii mode.
func TestTFTPHPA(t *testing.T) {
	if _, err := exec.LookPath("tftp"); err != nil {
		t.Skip("tftp-hpa's client not installed (apt-get install tftp-hpa)")
	}
	root := ipxeRoot(t)
	text := "menu\nline two\r\nend\n"
	if err := os.WriteFile(filepath.Join(root, "menu.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Options{Root: root, MaxBlockSize: 1468})
	for _, tc := range []struct{ name, mode, file string }{
		{"octet ipxe.efi", "octet", "ipxe.efi"},
		{"octet undionly.kpxe", "octet", "undionly.kpxe"},
		{"netascii text", "netascii", "menu.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := os.ReadFile(filepath.Join(root, tc.file))
			out := filepath.Join(t.TempDir(), "out")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := []string{"-v", "-m", tc.mode, "127.0.0.1", srv.port, "-c", "get", tc.file, out}
			trace, err := exec.CommandContext(ctx, "tftp", args...).CombinedOutput()
			if err != nil || ctx.Err() != nil {
				t.Fatalf("tftp %v: %v\n%s", args, err, trace)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, want) {
				t.Errorf("tftp-hpa %s got %d bytes differing from %s (%d bytes)\n%s", tc.mode, len(got), tc.file, len(want), trace)
			}
			waitEvent(t, srv, tc.file, func(ev Event) bool { return ev.Err == "" && ev.BlockSize == 512 && ev.WindowSize == 1 })
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func TestConcurrencyCaps(t *testing.T) {
	root := ipxeRoot(t)
	srv := startServer(t, Options{Root: root, MaxTransfers: 2, MaxPerClient: 1, Timeout: time.Second, Retries: 1})
	to, _ := net.ResolveUDPAddr("udp4", srv.addr)

	// open starts a transfer from ip and returns the first reply (a DATA
	// block or an ERROR), leaving the transfer pending (never ACKed).
	open := func(ip net.IP) (*net.UDPConn, []byte) {
		t.Helper()
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.WriteToUDP(rawRRQ("ipxe.efi"), to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("reading first reply for %s: %v", ip, err)
		}
		return c, buf[:n]
	}
	isData := func(p []byte) bool { return len(p) >= 4 && binary.BigEndian.Uint16(p) == 3 }
	isBusy := func(p []byte) bool {
		return len(p) >= 4 && binary.BigEndian.Uint16(p) == 5 && strings.Contains(string(p[4:]), "busy")
	}

	if _, p := open(net.IPv4(127, 0, 0, 1)); !isData(p) {
		t.Fatalf("first transfer from 127.0.0.1 got %q, want DATA", p)
	}
	if _, p := open(net.IPv4(127, 0, 0, 1)); !isBusy(p) {
		t.Errorf("second transfer from 127.0.0.1 got %q, want ERROR server busy (per-client cap 1)", p)
	}
	if _, p := open(net.IPv4(127, 0, 0, 2)); !isData(p) {
		t.Errorf("first transfer from 127.0.0.2 got %q, want DATA", p)
	}
	if _, p := open(net.IPv4(127, 0, 0, 3)); !isBusy(p) {
		t.Errorf("transfer from 127.0.0.3 got %q, want ERROR server busy (global cap 2)", p)
	}
	// Pending transfers time out (1 s x 2 sends), freeing their slots.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, p := open(net.IPv4(127, 0, 0, 3))
		if isData(p) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots not freed 15s after abandoned transfers; last reply %q", p)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
