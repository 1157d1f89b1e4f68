// Command kiln is the one multi-call binary of the kiln appliance: the host CLI
// (image, vm, serve, status …) and, inside the image, PID 1 and the service entry
// points. Invoked as "init" or "modprobe" (by symlink) it runs that role directly.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"kiln.dev/kiln/services/api/apiclient"
)

// stdio is the set of streams a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one kiln subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, s stdio) error
}

// errUsage marks an error caused by how the command was called (exit code
// 2); it is the API client's, which a bad --url wraps.
var errUsage = apiclient.ErrUsage

func commands() map[string]command {
	return map[string]command{
		"image":      {"build the appliance disk image (kiln image build)", runImage},
		"vm":         {"boot an image in QEMU (kiln vm run)", runVM},
		"flash":      {"write an image to a USB stick or disk, verified (kiln flash --device /dev/sdX IMAGE)", runFlash},
		"serve":      {"run the supervisor and services on this host", runServe},
		"status":     {"show the supervisor's service status", runStatus},
		"service":    {"run one service (started by the supervisor)", runService},
		"init":       {"run as PID 1 inside the appliance", runInit},
		"modprobe":   {"load a kernel module and its dependencies", runModprobe},
		"version":    {"print the version", runVersion},
		"hosts":      {"list, get, add, rm, import and export hosts (kiln hosts list|get|add|rm|import|export)", runHosts},
		"config":     {"check a config file (kiln config validate --config F)", runConfig},
		"login":      {"log in to an appliance's API and keep a token (kiln login --url URL)", runLogin},
		"leases":     {"list DHCP leases (through the API)", runLeases},
		"logs":       {"print or follow a service's log (kiln logs [-f] SERVICE)", runLogs},
		"completion": {"print a shell completion script (kiln completion bash|zsh)", runCompletion},
		"password":   {"show or reset the admin password on the appliance (kiln password show|reset)", runPassword},
		"net":        {"network status, try and confirm a network config (kiln net status|apply --try F|confirm)", runNet},
		"update":     {"build, push, inspect and roll back over-the-air updates (kiln update build|verify|push|status|rollback)", runUpdate},
		"ntp":        {"ask NTP servers for the time without setting the clock (kiln ntp query SERVER...)", runNTP},
		"backup":     {"write an encrypted backup of the state and config (kiln backup [-o FILE] | keygen -o FILE)", runBackup},
		"restore":    {"restore a backup onto this appliance, keeping the old state aside (kiln restore [--force] FILE)", runRestore},
		"keys":       {"make update signing keys (kiln keys gen --out DIR)", runKeys},
		"roots":      {"root images of diskless machines (kiln roots list|import|promote|rm)", runRoots},
		"volumes":    {"iSCSI volumes and CHAP for thin nodes (kiln volumes list|create|upload|grow|rm|chap)", runVolumes},
		"vet":        {"start, watch, stop and report hardware vetting runs; log in to held hosts (kiln vet start|list|show|stop|release|report|ssh|tunnel)", runVet},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		if errors.Is(err, apiclient.ErrAuth) {
			os.Exit(3)
		}
		if errors.Is(err, apiclient.ErrNotFound) {
			os.Exit(4)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, s stdio) error {
	cmds := commands()
	// Multi-call: a symlink named after a command runs it directly.
	if base := filepath.Base(args[0]); base != "kiln" {
		if c, ok := cmds[base]; ok {
			return c.run(ctx, args[1:], s)
		}
	}
	if len(args) < 2 || args[1] == "help" || args[1] == "-h" || args[1] == "--help" {
		usage(s.out, cmds)
		if len(args) < 2 {
			return fmt.Errorf("no command given: %w", errUsage)
		}
		return nil
	}
	c, ok := cmds[args[1]]
	if !ok {
		usage(s.err, cmds)
		return fmt.Errorf("unknown command %q: %w", args[1], errUsage)
	}
	return c.run(ctx, args[2:], s)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: kiln <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, cmds[n].summary)
	}
	io.WriteString(w, b.String())
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
