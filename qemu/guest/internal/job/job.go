// Package job is the contract between the guest harness on the host
// (qemu/guest) and the guest's PID 1 (qemu/guest/internal/guestinit): the job
// file that says what to run, the kernel command line parameter that names it,
// and the end-of-run marker line that carries the exit status back.
package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"kiln.dev/kiln/internal/cmdline"
)

// Param is the kernel command line parameter naming the job file, a host path
// the guest reads through the 9p root.
const Param = "kiln.job"

// RootTag is the 9p mount tag of the host's / (read-only).
const RootTag = "kilnroot"

// Console is the guest device the test's output goes to (the first virtio
// console); the serial console carries the kernel's messages.
const Console = "/dev/hvc0"

// InitramfsModules are in the guest's initramfs and loaded first: what it
// takes to reach the 9p root and the output console.
var InitramfsModules = []string{"virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay"}

// RootModules are loaded from the full module tree once the root is up,
// before the job's own: the RNG (crypto and the Go runtime want entropy
// early), virtio disks and configfs.
var RootModules = []string{"virtio_rng", "virtio_blk", "configfs"}

// Job is what the guest runs.
type Job struct {
	// Nonce makes the end marker unguessable for the test's own output.
	Nonce string `json:"nonce"`
	// Args is the command (Args[0] an absolute path on the host's root).
	Args []string `json:"args"`
	// Env is the command's whole environment.
	Env []string `json:"env"`
	// Dir is the command's working directory.
	Dir string `json:"dir"`
	// Modules are loaded, with their dependencies, before the command starts.
	Modules []string `json:"modules"`
	// ModuleTree is the host directory (seen through the 9p root) holding the
	// kernel's whole /lib/modules/<release> tree with its indexes; the guest
	// binds it at /lib/modules/<release>.
	ModuleTree string `json:"module_tree"`
	// Modprobe is kmod's modprobe on the host's root; it loads Modules and
	// answers the kernel's request_module (reading the tree's binary indexes).
	Modprobe string `json:"modprobe"`
	// Shares are read-write 9p exports mounted at Path.
	Shares []Share `json:"shares"`
}

// Share is a host directory exported read-write under Tag and mounted at the
// same path in the guest.
type Share struct {
	Tag  string `json:"tag"`
	Path string `json:"path"`
}

// Validate checks what the guest relies on.
func (j Job) Validate() error {
	if j.Nonce == "" || strings.ContainsAny(j.Nonce, " \t\r\n") {
		return errors.New("job: nonce is empty or has spaces")
	}
	if len(j.Args) == 0 || !filepath.IsAbs(j.Args[0]) {
		return fmt.Errorf("job: args %q: want an absolute program path first", j.Args)
	}
	if !filepath.IsAbs(j.Dir) {
		return fmt.Errorf("job: dir %q is not absolute", j.Dir)
	}
	if !filepath.IsAbs(j.ModuleTree) || !filepath.IsAbs(j.Modprobe) {
		return fmt.Errorf("job: module tree %q or modprobe %q is not absolute", j.ModuleTree, j.Modprobe)
	}
	for i, s := range j.Shares {
		if s.Tag == "" || !filepath.IsAbs(s.Path) || filepath.Clean(s.Path) == "/" {
			return fmt.Errorf("job: shares[%d] %+v: want a tag and an absolute path other than /", i, s)
		}
	}
	return nil
}

// Write stores the job as JSON at path.
func (j Job) Write(path string) error {
	if err := j.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding job: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing job file: %w", err)
	}
	return nil
}

// Read loads and validates a job file.
func Read(path string) (Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Job{}, fmt.Errorf("reading job file: %w", err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return Job{}, fmt.Errorf("decoding job file %s: %w", path, err)
	}
	return j, j.Validate()
}

// CmdlineParam returns "kiln.job=<path>" for the kernel command line. The
// kernel splits its command line at spaces, so a path with white space or
// quotes is refused.
func CmdlineParam(path string) (string, error) {
	if !filepath.IsAbs(path) || strings.ContainsAny(path, " \t\r\n\"") {
		return "", fmt.Errorf("job file path %q: want an absolute path without spaces or quotes", path)
	}
	return Param + "=" + path, nil
}

// FromCmdline returns the job path of a kernel command line (/proc/cmdline).
func FromCmdline(s string) (string, error) {
	v, ok := cmdline.Parse(s).First(Param)
	if !ok {
		return "", fmt.Errorf("kernel command line has no %s= parameter (boot the guest through qemu/guest)", Param)
	}
	if !filepath.IsAbs(v) || strings.ContainsAny(v, " \t\r\n") {
		return "", fmt.Errorf("kernel command line %s=%q is not an absolute path without spaces", Param, v)
	}
	return v, nil
}

// markerPrefix starts every marker line: "kiln-guest <nonce> ".
const markerPrefix = "kiln-guest "

// ExitLine is the line the guest writes, on a line of its own, after the
// command ended with status code.
func ExitLine(nonce string, code int) string {
	return markerPrefix + nonce + " exit " + strconv.Itoa(code)
}

// ErrorLine is the line the guest writes when it could not run the command.
func ErrorLine(nonce, msg string) string {
	return markerPrefix + nonce + " error " + strings.ReplaceAll(msg, "\n", " ")
}

// Marker is a parsed marker line.
type Marker struct {
	Exit  int    // the command's exit status (128+signal when killed)
	Error string // set when the guest could not run the command
}

// ParseMarker reports whether line is an exit or error marker for nonce.
func ParseMarker(nonce, line string) (Marker, bool) {
	rest, ok := strings.CutPrefix(line, markerPrefix+nonce+" ")
	if !ok || nonce == "" {
		return Marker{}, false
	}
	if v, ok := strings.CutPrefix(rest, "exit "); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != v {
			return Marker{}, false
		}
		return Marker{Exit: n}, true
	}
	if v, ok := strings.CutPrefix(rest, "error "); ok {
		if v == "" {
			v = "unknown error"
		}
		return Marker{Exit: -1, Error: v}, true
	}
	return Marker{}, false
}
