// Package hosttool finds and runs the host programs the image build needs
// (mksquashfs, qemu-img, dpkg-deb, apt-get …), and turns a missing one into an
// operator-facing message naming the Debian package that provides it.
package hosttool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// ErrMissing marks a host tool that is not installed.
var ErrMissing = errors.New("host tool missing")

// Tool is a host program and the Debian package that ships it.
type Tool struct {
	Name    string // program name looked up in PATH
	Package string // Debian package providing it
}

// Known tools of the image build.
var (
	AptGet     = Tool{"apt-get", "apt"}
	AptCache   = Tool{"apt-cache", "apt"}
	DpkgDeb    = Tool{"dpkg-deb", "dpkg"}
	Mksquashfs = Tool{"mksquashfs", "squashfs-tools"}
	Unsquashfs = Tool{"unsquashfs", "squashfs-tools"}
	QemuImg    = Tool{"qemu-img", "qemu-utils"}
	Sgdisk     = Tool{"sgdisk", "gdisk"}
	FsckVfat   = Tool{"fsck.vfat", "dosfstools"}
	Depmod     = Tool{"depmod", "kmod"}
	Ldd        = Tool{"ldd", "libc-bin"}
)

// Check returns one error listing every missing tool, or nil.
func Check(tools ...Tool) error {
	var errs []error
	for _, t := range tools {
		if _, err := t.Path(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Path returns the tool's full path, or an error wrapping ErrMissing that tells the
// operator what to install.
func (t Tool) Path() (string, error) {
	p, err := exec.LookPath(t.Name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH: install the Debian package %s (apt-get install %s): %w",
			t.Name, t.Package, t.Package, ErrMissing)
	}
	return p, nil
}

// Command returns an exec.Cmd for the tool, or the missing-tool error.
func (t Tool) Command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	p, err := t.Path()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, p, args...), nil
}

// Run runs the tool in dir (the current directory when empty) and returns its
// standard output. A failure's error includes the command line and the end of its
// standard error.
func (t Tool) Run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd, err := t.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &RunError{Cmd: t.Name + " " + strings.Join(args, " "), Stderr: tail(stderr.String(), 2000), Err: err}
	}
	return stdout.Bytes(), nil
}

// RunError is a tool that ran and failed.
type RunError struct {
	Cmd    string
	Stderr string
	Err    error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("running %s: %v: %s", e.Cmd, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *RunError) Unwrap() error { return e.Err }

// Pipe starts the tool with its standard output as the returned reader. Call the
// returned wait function after reading to the end.
func (t Tool) Pipe(ctx context.Context, args ...string) (io.Reader, func() error, error) {
	cmd, err := t.Command(ctx, args...)
	if err != nil {
		return nil, nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", t.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", t.Name, err)
	}
	wait := func() error {
		if err := cmd.Wait(); err != nil {
			return &RunError{Cmd: t.Name + " " + strings.Join(args, " "), Stderr: tail(stderr.String(), 2000), Err: err}
		}
		return nil
	}
	return out, wait, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
