package tftp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rawClient speaks TFTP packet by packet, to provoke what real clients only
// do on a lossy network.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server netip.AddrPort
	// tid is the server's transfer socket, learnt from its first reply.
	tid netip.AddrPort
}

func newRawClient(t *testing.T, server string) *rawClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, server: netip.MustParseAddrPort(server)}
}

func (c *rawClient) send(p []byte) {
	c.t.Helper()
	to := c.tid
	if !to.IsValid() {
		to = c.server
	}
	if _, err := c.conn.WriteToUDPAddrPort(p, to); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) ack(block uint16) {
	c.t.Helper()
	c.send(binary.BigEndian.AppendUint16([]byte{0, opACK}, block))
}

// recv returns the next packet, or nil when none arrives within d.
func (c *rawClient) recv(d time.Duration) []byte {
	c.t.Helper()
	buf := make([]byte, 70000)
	c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		c.t.Fatal(err)
	}
	if !c.tid.IsValid() {
		c.tid = from
	} else if from != c.tid {
		c.t.Fatalf("packet from %s, want the transfer ID %s", from, c.tid)
	}
	return buf[:n]
}

// data expects a DATA packet with block number want and returns its payload.
func (c *rawClient) data(want uint16) []byte {
	c.t.Helper()
	p := c.recv(5 * time.Second)
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != want {
		c.t.Fatalf("got %s, want DATA %d", describe(p), want)
	}
	return p[4:]
}

// none expects silence for d.
func (c *rawClient) none(d time.Duration, why string) {
	c.t.Helper()
	if p := c.recv(d); p != nil {
		c.t.Fatalf("got %s within %s, want nothing (%s)", describe(p), d, why)
	}
}

func describe(p []byte) string {
	switch {
	case p == nil:
		return "nothing"
	case len(p) < 4:
		return strconv.Quote(string(p))
	}
	switch binary.BigEndian.Uint16(p) {
	case opDATA:
		return "DATA " + strconv.Itoa(int(binary.BigEndian.Uint16(p[2:]))) + " (" + strconv.Itoa(len(p)-4) + " bytes)"
	case opERROR:
		return "ERROR " + strconv.Itoa(int(binary.BigEndian.Uint16(p[2:]))) + " " + strconv.Quote(string(p[4:]))
	case opOACK:
		return "OACK " + strconv.Quote(string(p[2:]))
	}
	return strconv.Quote(string(p))
}

// randomRoot writes a file of size random bytes into a new root.
func randomRoot(t *testing.T, name string, size int) (root string, content []byte) {
	t.Helper()
	root = t.TempDir()
	content = make([]byte, size)
	rand.Read(content)
	if err := os.WriteFile(filepath.Join(root, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, content
}

func TestWindowedTransfer(t *testing.T) {
	root, want := randomRoot(t, "f", 10*512+100) // blocks 1-10 full, 11 short
	srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second, Retries: 2})
	c := newRawClient(t, srv.addr)
	c.send(rawRRQ("f", "blksize", "512", "tsize", "0", "windowsize", "4"))
	got := parseOACK(t, c.recv(5*time.Second))
	if diff := cmp.Diff(map[string]string{"blksize": "512", "tsize": strconv.Itoa(len(want)), "windowsize": "4"}, got); diff != "" {
		t.Fatalf("OACK mismatch (-want +got):\n%s", diff)
	}
	c.ack(0)
	var out []byte
	for b := uint16(1); b <= 4; b++ {
		out = append(out, c.data(b)...)
	}
	c.none(300*time.Millisecond, "a window is 4 blocks")
	c.ack(4)
	for b := uint16(5); b <= 8; b++ {
		d := c.data(b)
		if b <= 6 {
			out = append(out, d...)
		}
	}
	// The client lost 7 and 8: it acknowledges 6, the next window starts at 7.
	c.ack(6)
	for b := uint16(7); b <= 10; b++ {
		out = append(out, c.data(b)...)
	}
	c.ack(10)
	out = append(out, c.data(11)...)
	c.ack(11)
	if !bytes.Equal(out, want) {
		t.Errorf("received %d bytes differing from the %d-byte file", len(out), len(want))
	}
	waitEvent(t, srv, "f", func(ev Event) bool {
		return ev.Err == "" && ev.Bytes == int64(len(want)) && ev.WindowSize == 4 && ev.BlockSize == 512
	})
}

func TestRetransmission(t *testing.T) {
	root, _ := randomRoot(t, "f", 8*512)
	t.Run("window resent on timeout", func(t *testing.T) {
		srv := startServer(t, Options{Root: root, Timeout: 300 * time.Millisecond, Retries: 3})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f", "windowsize", "4"))
		parseOACK(t, c.recv(5*time.Second))
		c.ack(0)
		for b := uint16(1); b <= 4; b++ {
			c.data(b)
		}
		start := time.Now()
		for b := uint16(1); b <= 4; b++ {
			c.data(b)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("window resent after %s, want after the 300ms timeout", d)
		}
	})
	t.Run("window resent at once on a duplicate ACK, once", func(t *testing.T) {
		srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second, Retries: 3})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f", "windowsize", "4"))
		parseOACK(t, c.recv(5*time.Second))
		c.ack(0)
		for b := uint16(1); b <= 4; b++ {
			c.data(b)
		}
		c.ack(4)
		for b := uint16(5); b <= 8; b++ {
			c.data(b) // "lost"
		}
		c.ack(4)
		for b := uint16(5); b <= 8; b++ {
			c.data(b)
		}
		c.ack(4)
		c.none(500*time.Millisecond, "a second duplicate waits for the timeout")
		c.ack(8)
		c.data(9) // the empty final block
	})
	t.Run("duplicate ACK ignored with window 1", func(t *testing.T) {
		srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second, Retries: 3})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f"))
		c.data(1)
		c.ack(1)
		c.data(2)
		c.ack(1)
		c.none(500*time.Millisecond, "Sorcerer's Apprentice: a duplicate ACK must not resend")
		c.ack(2)
		c.data(3)
	})
	t.Run("gives up after the retries", func(t *testing.T) {
		srv := startServer(t, Options{Root: root, Timeout: 200 * time.Millisecond, Retries: 2})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f"))
		for range 3 {
			c.data(1)
		}
		c.none(600*time.Millisecond, "1 send + 2 retries")
		waitEvent(t, srv, "f", func(ev Event) bool { return strings.Contains(ev.Err, ErrTimeout.Error()) })
	})
	t.Run("negotiated timeout used", func(t *testing.T) {
		srv := startServer(t, Options{Root: root, Timeout: 200 * time.Millisecond, Retries: 2})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f", "timeout", "1"))
		if got := parseOACK(t, c.recv(5*time.Second)); got["timeout"] != "1" {
			t.Fatalf("OACK = %v, want timeout 1", got)
		}
		start := time.Now()
		parseOACK(t, c.recv(5*time.Second)) // the OACK again
		if d := time.Since(start); d < 800*time.Millisecond {
			t.Errorf("OACK resent after %s, want after the negotiated 1s", d)
		}
	})
}

func TestTransferEdges(t *testing.T) {
	t.Run("block numbers wrap after 65535", func(t *testing.T) {
		root, want := randomRoot(t, "big", 65536*8+3)
		srv := startServer(t, Options{Root: root, Timeout: 10 * time.Second}) // no resends: c.data wants order
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("big", "blksize", "8", "windowsize", "64"))
		parseOACK(t, c.recv(5*time.Second))
		c.ack(0)
		var out []byte
		for b := 1; b <= 65537; {
			last := min(b+63, 65537)
			for ; b <= last; b++ {
				out = append(out, c.data(uint16(b))...)
			}
			c.ack(uint16(last))
		}
		if !bytes.Equal(out, want) {
			t.Errorf("received %d bytes differing from the %d-byte file", len(out), len(want))
		}
		waitEvent(t, srv, "big", func(ev Event) bool { return ev.Err == "" && ev.Bytes == int64(len(want)) })
	})
	t.Run("other ports get ERROR 5", func(t *testing.T) {
		root, _ := randomRoot(t, "f", 2000)
		srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f"))
		c.data(1)
		intruder := newRawClient(t, srv.addr)
		intruder.tid = c.tid
		intruder.ack(1)
		if p := intruder.recv(5 * time.Second); len(p) < 4 || binary.BigEndian.Uint16(p) != opERROR || binary.BigEndian.Uint16(p[2:]) != errCodeUnknownTID {
			t.Errorf("intruder got %s, want ERROR 5", describe(p))
		}
		c.ack(1)
		c.data(2)
	})
	t.Run("options refused by the client", func(t *testing.T) {
		root, _ := randomRoot(t, "f", 2000)
		srv := startServer(t, Options{Root: root})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f", "blksize", "1024"))
		parseOACK(t, c.recv(5*time.Second))
		c.send(appendError(nil, errCodeOptionRefused, "no"))
		waitEvent(t, srv, "f", func(ev Event) bool { return strings.Contains(ev.Err, "refused the options") })
	})
	t.Run("retransmitted request starts no second transfer", func(t *testing.T) {
		root, _ := randomRoot(t, "f", 2000)
		srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f"))
		c.data(1)
		c.tid = netip.AddrPort{}
		c.send(rawRRQ("f"))
		c.tid = netip.AddrPort{}
		if p := c.recv(500 * time.Millisecond); p != nil {
			t.Errorf("a retransmitted request got %s, want nothing (its transfer runs)", describe(p))
		}
	})
	t.Run("another request from the same port starts a transfer", func(t *testing.T) {
		// PXE ROMs ask for tsize, abort, and ask again with other options.
		root, _ := randomRoot(t, "f", 2000)
		srv := startServer(t, Options{Root: root, Timeout: 5 * time.Second})
		c := newRawClient(t, srv.addr)
		c.send(rawRRQ("f", "tsize", "0"))
		parseOACK(t, c.recv(5*time.Second))
		c.tid = netip.AddrPort{}
		c.send(rawRRQ("f", "blksize", "1024"))
		c.tid = netip.AddrPort{}
		for {
			p := c.recv(5 * time.Second)
			if p == nil {
				t.Fatal("no OACK for the second request")
			}
			if got := parseOACK(t, p); got["blksize"] == "1024" {
				break
			}
			c.tid = netip.AddrPort{} // the first transfer resent its OACK
		}
	})
	t.Run("netascii", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "cfg"), []byte("a\nb\r"), 0o644)
		srv := startServer(t, Options{Root: root})
		c := newRawClient(t, srv.addr)
		c.send(append(append([]byte{0, 1}, "cfg\x00netascii\x00tsize\x000"...), 0))
		if got := parseOACK(t, c.recv(5*time.Second)); got["tsize"] != "6" {
			t.Errorf("netascii tsize = %q, want 6 (a CR LF b CR NUL)", got["tsize"])
		}
		c.ack(0)
		if got := string(c.data(1)); got != "a\r\nb\r\x00" {
			t.Errorf("netascii data = %q, want %q", got, "a\r\nb\r\x00")
		}
	})
	t.Run("mail mode refused", func(t *testing.T) {
		root, _ := randomRoot(t, "f", 10)
		srv := startServer(t, Options{Root: root})
		c := newRawClient(t, srv.addr)
		c.send(append(append([]byte{0, 1}, "f\x00mail"...), 0))
		if p := c.recv(5 * time.Second); len(p) < 4 || binary.BigEndian.Uint16(p) != opERROR || binary.BigEndian.Uint16(p[2:]) != errCodeIllegalOp {
			t.Errorf("mail mode got %s, want ERROR 4", describe(p))
		}
	})
}

// waitEvent waits up to 5 s for the last event about file to satisfy ok.
func waitEvent(t *testing.T, srv testServer, file string, ok func(Event) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev, found := srv.events.find(file)
		if found && ok(ev) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("event for %s = %+v (found %v), not the one expected", file, ev, found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
