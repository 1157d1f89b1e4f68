package boottest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
)

// Recovery drives the recovery menu and its shell on the serial console, the
// way an operator with a serial cable would.
type Recovery struct {
	t   testing.TB
	ctx context.Context
	vm  *qemu.VM
	n   int // commands run, for unique completion markers
}

// NewRecovery returns a driver for vm's recovery console.
func NewRecovery(t testing.TB, ctx context.Context, vm *qemu.VM) *Recovery {
	return &Recovery{t: t, ctx: ctx, vm: vm}
}

var (
	choiceRE = regexp.MustCompile(`choice \[1-\d, q\]:`)
	shellRE  = regexp.MustCompile(`starting a shell`)
	// exitedRE is the menu's line after the shell, printed on the reopened terminal.
	exitedRE  = regexp.MustCompile(`the shell exited`)
	confirmRE = regexp.MustCompile(`reboot .*\? \[y/N\]:`)
	promptRE  = regexp.MustCompile(`^[#$>] `)
)

func (r *Recovery) expect(re *regexp.Regexp, timeout time.Duration) string {
	r.t.Helper()
	l, err := r.vm.Expect(r.ctx, re, timeout)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *Recovery) send(s string) {
	r.t.Helper()
	if err := r.vm.SendSerial(s); err != nil {
		r.t.Fatal(err)
	}
}

// Menu opens the menu: it presses Enter until the menu prompt shows (the
// console's banner may come before or after "kiln: ready", and Enter typed
// before the console reads the terminal is lost).
func (r *Recovery) Menu() {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r.send("\r")
		_, err := r.vm.Expect(r.ctx, choiceRE, 5*time.Second)
		if err == nil {
			return
		}
		if !errors.Is(err, qemu.ErrTimeout) || time.Now().After(deadline) {
			r.t.Fatal(err)
		}
	}
}

// Choose types a menu choice (the menu must be showing its prompt).
func (r *Recovery) Choose(item string) {
	r.t.Helper()
	r.send(item + "\r")
}

// Shell opens the shell from the menu (the menu must be showing its prompt)
// and waits for its prompt: u-root's gosh edits lines with bubbline, which
// queries the terminal first and drops what was typed before it started.
func (r *Recovery) Shell() {
	r.t.Helper()
	r.Choose("6")
	r.expect(shellRE, 30*time.Second)
	start := time.Now()
	r.expect(promptRE, time.Minute)
	r.t.Logf("shell prompt after %.1fs", time.Since(start).Seconds())
}

// settle waits until the line editor has finished drawing its prompt: keys
// typed while bubbline still starts up are lost or leave it hanging.
func (r *Recovery) settle() {
	r.t.Helper()
	if err := r.vm.WaitQuiet(r.ctx, 2*time.Second, 30*time.Second); err != nil {
		r.t.Fatal(err)
	}
}

// Run types a shell command line once the prompt has settled and waits until
// the command has finished and the shell prompts again.
// The completion marker is computed by the shell, so the echo of the typed
// line never matches it.
func (r *Recovery) Run(cmd string) {
	r.t.Helper()
	r.n++
	r.settle()
	r.send(fmt.Sprintf("%s; echo kiln-done-$((%d+1))\r", cmd, r.n-1))
	// Not \b: a kernel or supervisor line can follow the marker on the same
	// console line ("kiln-done-1time=…"), as both write to the serial port.
	r.expect(regexp.MustCompile(`^kiln-done-`+strconv.Itoa(r.n)+`(\D|$)`), time.Minute)
	r.expect(promptRE, 30*time.Second)
}

// ExitShell leaves the shell and waits for the menu prompt again. On ttyS0
// the shell's exit hangs up the serial line (the kernel does that when a
// session leader's controlling terminal is not a pty); the menu reopens it.
func (r *Recovery) ExitShell() {
	r.t.Helper()
	r.settle()
	r.send("exit\r")
	start := time.Now()
	r.expect(exitedRE, 30*time.Second)
	r.expect(choiceRE, 30*time.Second)
	r.t.Logf("menu back %.1fs after exit", time.Since(start).Seconds())
}

// Reboot chooses reboot in the menu and confirms it (the menu must be
// showing its prompt); the caller waits for the reboot itself.
func (r *Recovery) Reboot() {
	r.t.Helper()
	r.Choose("7")
	r.expect(confirmRE, 30*time.Second)
	r.send("y\r")
}

// Type types s at the shell once its prompt has settled (for a last command
// such as a reboot, whose completion the caller checks itself).
func (r *Recovery) Type(s string) {
	r.t.Helper()
	r.settle()
	r.send(s)
}
