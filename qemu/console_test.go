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
	c.write([]byte("kiln: ready\r\nlogin"), now)

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
