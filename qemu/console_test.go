package qemu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConsoleExpect(t *testing.T) {
	ctx := context.Background()
	c := newConsole()
	now := time.Now()
	c.write([]byte("\x1b[2J\x1b[01;01HBdsDxe: starting\r\nkiln-stage1: slot a root PARTUUID=X\r\n"), now)
	c.write([]byte("kiln: ready\r\n\x1b]10;?\x1b\\\x1b[6n\x1b]11;?\x07log"), now)
	c.write([]byte("in"), now)

	steps := []struct {
		re   string
		want string
	}{
		{`BdsDxe: starting`, "BdsDxe: starting"}, // escape sequences are stripped
		{`slot (a|b)`, "kiln-stage1: slot a root PARTUUID=X"},
		{`^kiln: ready$`, "kiln: ready"},
		{`login`, "login"}, // the partial last line matches too
	}
	for _, s := range steps {
		got, err := c.expect(ctx, regexp.MustCompile(s.re), time.Second)
		if err != nil || got.Text != s.want {
			t.Fatalf("expect(%q) = %q, %v, want %q", s.re, got.Text, err, s.want)
		}
	}
	// The cursor moved past everything: an old marker does not match again.
	if _, err := c.expect(ctx, regexp.MustCompile(`kiln: ready`), 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("expect(old marker) error = %v, want ErrTimeout", err)
	}
	// The partial line completes later; text after the previous match is found.
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.write([]byte(": root\r\nkiln: ready\n"), time.Now())
	}()
	if got, err := c.expect(ctx, regexp.MustCompile(`^kiln: ready$`), 5*time.Second); err != nil || got.Text != "kiln: ready" {
		t.Fatalf("expect(new marker) = %q, %v", got.Text, err)
	}
	if got := c.snapshot(); got[len(got)-2].Text != "login: root" {
		t.Errorf("snapshot()[-2] = %q, want %q", got[len(got)-2].Text, "login: root")
	}
}

func TestConsoleExpectErrors(t *testing.T) {
	c := newConsole()
	for i := 0; i < 50; i++ {
		c.write([]byte(fmt.Sprintf("line %d\n", i)), time.Now())
	}
	_, err := c.expect(context.Background(), regexp.MustCompile(`never`), 10*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("expect() error = %v, want ErrTimeout", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "| line 49") || !strings.Contains(msg, "| line 10") || strings.Contains(msg, "| line 9\n") {
		t.Errorf("expect() error does not hold exactly the last 40 lines:\n%s", msg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.expect(ctx, regexp.MustCompile(`never`), time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("expect(cancelled) error = %v, want context.Canceled", err)
	}

	go func() {
		time.Sleep(10 * time.Millisecond)
		c.end(errors.New("exit status 1"))
	}()
	if _, err := c.expect(context.Background(), regexp.MustCompile(`never`), time.Minute); !errors.Is(err, ErrExited) {
		t.Errorf("expect(after exit) error = %v, want ErrExited", err)
	}
}

func TestConsoleFailOn(t *testing.T) {
	c := newConsole()
	c.setFailOn([]*regexp.Regexp{regexp.MustCompile(`Kernel panic`)})
	c.write([]byte("kiln-stage1: switching root\n[ 6.3] Kernel panic - not syncing: Attempted to kill init!\nkiln: ready\n"), time.Now())
	if _, err := c.expect(context.Background(), regexp.MustCompile(`switching root`), time.Second); err != nil {
		t.Fatalf("expect(before the panic) error = %v", err)
	}
	_, err := c.expect(context.Background(), regexp.MustCompile(`kiln: ready`), time.Minute)
	if !errors.Is(err, ErrFailLine) || !strings.Contains(err.Error(), "Attempted to kill init") {
		t.Fatalf("expect(after the panic) error = %v, want ErrFailLine naming the line", err)
	}
	// The failure line is consumed; what follows can still be matched.
	if _, err := c.expect(context.Background(), regexp.MustCompile(`kiln: ready`), time.Second); err != nil {
		t.Errorf("expect(after the failure line) error = %v", err)
	}
}

func TestConsoleQuiet(t *testing.T) {
	c := newConsole()
	ctx := context.Background()
	c.write([]byte("x"), time.Now())
	stop := make(chan struct{})
	go func() { // chatter for 150 ms
		for i := 0; i < 15; i++ {
			time.Sleep(10 * time.Millisecond)
			c.write([]byte("y"), time.Now())
		}
		close(stop)
	}()
	start := time.Now()
	if err := c.quiet(ctx, 50*time.Millisecond, 5*time.Second); err != nil {
		t.Fatalf("quiet() error = %v", err)
	}
	<-stop
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("quiet() returned after %v, while output still arrived", took)
	}
	c.write([]byte("z"), time.Now())
	if err := c.quiet(ctx, time.Second, 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("quiet(longer than timeout) error = %v, want ErrTimeout", err)
	}
}

// TestConsolePartialLineSettles: a line still arriving is not matched until it
// has stopped growing, so a pattern with a variable tail sees all of it.
func TestConsolePartialLineSettles(t *testing.T) {
	c := newConsole()
	re := regexp.MustCompile(`PARTUUID=([0-9A-F-]+)`)
	c.write([]byte("kiln-stage1: slot b root PARTUUID=D8E347E8-A476-"), time.Now())
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.write([]byte("59DB"), time.Now())
	}()
	l, err := c.expect(context.Background(), re, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := re.FindStringSubmatch(l.Text)[1]; got != "D8E347E8-A476-59DB" {
		t.Errorf("expect() matched %q of a line still arriving, want D8E347E8-A476-59DB", got)
	}
}

func TestCountQueries(t *testing.T) {
	tests := []struct {
		chunks []string
		want   int
	}{
		{[]string{"\x1b[6n"}, 1},
		{[]string{"abc\x1b[6ndef\x1b[6n"}, 2},
		{[]string{"abc\x1b[", "6n"}, 1},
		{[]string{"\x1b", "[", "6", "n"}, 1},
		{[]string{"\x1b[6n", "\x1b[6n"}, 2},
		{[]string{"\x1b[6", "m\x1b[6n"}, 1},
		{[]string{"6n", "\x1b[5n"}, 0},
	}
	for _, tt := range tests {
		var carry []byte
		got := 0
		for _, c := range tt.chunks {
			var n int
			n, carry = countQueries(carry, []byte(c))
			got += n
		}
		if got != tt.want {
			t.Errorf("countQueries over %q = %d, want %d", tt.chunks, got, tt.want)
		}
	}
}
