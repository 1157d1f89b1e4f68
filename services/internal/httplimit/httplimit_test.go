package httplimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs an HTTP server on a loopback listener wrapped by Listen and
// Handler; the handler reads the whole body and answers with its length.
func serve(t *testing.T, c Conns, b Body) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return // the connection was cut
		}
		if r.URL.Path == "/slow-answer" {
			time.Sleep(3 * b.Grace) // longer than any body deadline
		}
		fmt.Fprintf(w, "%d", n)
	})
	srv := &http.Server{Handler: Handler(h, b), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(Listen(ln, c))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dial connects from the loopback address from (127.0.0.x: another source).
func dial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answer sends a small POST on c and returns the answer's body, or the
// error that ended the connection. Every wait is bounded.
func answer(c net.Conn, path, body string) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// cut reports whether the server ended c within the bounded wait (EOF or
// reset) rather than leaving it open.
func cut(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func TestConnectionCaps(t *testing.T) {
	addr := serve(t, Conns{Total: 5, PerSource: 3}, Body{Grace: 10 * time.Second})
	var open []net.Conn
	for i := range 3 {
		c := dial(t, addr, "127.0.0.1")
		if got, err := answer(c, "/", "abc"); got != "3" {
			t.Fatalf("connection %d from 127.0.0.1 = %q, %v, want served", i+1, got, err)
		}
		open = append(open, c)
	}
	if got, err := answer(dial(t, addr, "127.0.0.1"), "/", "abc"); err == nil {
		t.Errorf("4th connection from 127.0.0.1 = %q, want it closed (per-source cap 3)", got)
	}
	for i := range 2 {
		c := dial(t, addr, "127.0.0.2")
		if got, err := answer(c, "/", "ab"); got != "2" {
			t.Fatalf("connection %d from 127.0.0.2 = %q, %v, want served (its own per-source count)", i+1, got, err)
		}
		open = append(open, c)
	}
	if got, err := answer(dial(t, addr, "127.0.0.3"), "/", "a"); err == nil {
		t.Errorf("6th connection in all = %q, want it closed (total cap 5)", got)
	}
	// A closed connection frees its slot, in the total and for its source.
	open[0].Close()
	for range 100 { // the server notices the close asynchronously
		if got, _ := answer(dial(t, addr, "127.0.0.3"), "/", "a"); got == "1" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("after a close, a new connection is still refused")
}

func TestSlowBodiesAreCut(t *testing.T) {
	b := Body{Grace: 300 * time.Millisecond, MinRate: 1000, Idle: 200 * time.Millisecond}
	addr := serve(t, Conns{}, b)

	// Headers announce a body that never comes.
	silent := dial(t, addr, "127.0.0.1")
	fmt.Fprintf(silent, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	// A body trickled at 10 bytes/s, far below 1000 bytes/s.
	trickle := dial(t, addr, "127.0.0.1")
	fmt.Fprintf(trickle, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for range 100 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := trickle.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	if !cut(silent) {
		t.Errorf("a request whose body never comes is still open")
	}
	if !cut(trickle) {
		t.Errorf("a request whose body trickles below the minimum rate is still open")
	}
	// A prompt body is read; the answer may take longer than the body's
	// deadlines (they end with the body).
	if got, err := answer(dial(t, addr, "127.0.0.1"), "/slow-answer", strings.Repeat("y", 5000)); got != "5000" {
		t.Errorf("prompt body with a slow answer = %q, %v, want 5000", got, err)
	}
	// A request without a body has no read deadline at all.
	c := dial(t, addr, "127.0.0.1")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /slow-answer HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET without a body and a slow answer: %v", err)
	}
	resp.Body.Close()
}
