package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/services/api/apiclient"
)

// vetRun is a vetting run as the API returns it (the fields the CLI shows).
type vetRun struct {
	ID       string     `json:"id"`
	Host     string     `json:"host"`
	State    string     `json:"state"`
	Active   bool       `json:"active"`
	Profile  string     `json:"profile"`
	Hold     bool       `json:"hold"`
	Wipe     bool       `json:"wipe"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started"`
	Ended    *time.Time `json:"ended"`
	Verdict  string     `json:"verdict"`
	Summary  string     `json:"summary"`
	Stage    string     `json:"stage"`
	Progress float64    `json:"progress"`
	Findings []struct {
		Status  string `json:"status"`
		Source  string `json:"source"`
		Message string `json:"message"`
	} `json:"findings"`
	Stages []struct {
		Name    string `json:"name"`
		Status  string `json:"status"`
		Summary string `json:"summary"`
	} `json:"stages"`
	Holding *struct {
		Addr       string `json:"addr"`
		SSHCommand string `json:"ssh_command"`
	} `json:"holding"`
	Error     string `json:"error"`
	ReportURL string `json:"report_url"`
}

type vetSSH struct {
	User       string `json:"user"`
	Addr       string `json:"addr"`
	PrivateKey string `json:"private_key"`
	KnownHosts string `json:"known_hosts"`
}

const vetUsage = `kiln vet start HOST [--profile quick|standard|extended] [--hold] [--wipe]
kiln vet list [--host HOST] [--active]
kiln vet show RUN
kiln vet stop RUN
kiln vet release RUN
kiln vet report RUN [--html] [-o FILE]
kiln vet ssh RUN [-- COMMAND…]
kiln vet tunnel RUN`

// runVet drives vetting runs through the API.
func runVet(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		return fmt.Errorf("vet: name a subcommand:\n%s: %w", vetUsage, errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("vet "+sub, flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var profile *string
	var hold, wipe, active, html *bool
	var host, outFile *string
	switch sub {
	case "start":
		profile = fs.String("profile", "", "quick, standard or extended (default: the appliance's vetting.default_profile)")
		hold = fs.Bool("hold", false, "keep the host up with an SSH server if it fails")
		wipe = fs.Bool("wipe", false, "allow destructive storage tests: ERASES the host's disks (admin; asks to type the host name)")
	case "list":
		host = fs.String("host", "", "only this host's runs")
		active = fs.Bool("active", false, "only runs under way")
	case "report":
		html = fs.Bool("html", false, "the HTML report instead of JSON")
		outFile = fs.String("o", "", "write to this file instead of standard output")
	case "show", "stop", "release", "ssh", "tunnel":
	default:
		return fmt.Errorf("vet: unknown subcommand %q:\n%s: %w", sub, vetUsage, errUsage)
	}
	// Flags may come after the positional argument (kiln vet start node7 --hold).
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("vet %s: %v: %w", sub, err, errUsage)
		}
		args = fs.Args()
		if len(args) == 0 || args[0] == "--" {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
		if sub == "ssh" && len(pos) == 1 {
			break
		}
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		return fmt.Errorf("vet %s: want %d argument(s), got %q:\n%s: %w", sub, want, pos, vetUsage, errUsage)
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("vet %s: %w", sub, err)
	}
	show := func(r vetRun) error {
		if *asJSON {
			return printJSON(s.out, r)
		}
		printVetRun(s.out, r)
		return nil
	}
	runPath := func(suffix string) string { return "/api/v1/vetting/runs/" + url.PathEscape(pos[0]) + suffix }
	var r vetRun
	switch sub {
	case "start":
		body := map[string]any{"host": pos[0], "profile": *profile, "hold": *hold, "wipe": *wipe}
		if *wipe {
			fmt.Fprintf(s.err, "A destructive run ERASES every disk of %s. Type the host name to confirm: ", pos[0])
			line, _ := readLine(s.in)
			body["confirm_wipe"] = strings.TrimSpace(line)
		}
		if err := c.Do(ctx, "POST", "/api/v1/vetting/runs", body, &r); err != nil {
			return fmt.Errorf("vet start: %w", err)
		}
		return show(r)
	case "list":
		q := url.Values{}
		if *host != "" {
			q.Set("host", *host)
		}
		if *active {
			q.Set("active", "true")
		}
		var runs []vetRun
		if err := c.Do(ctx, "GET", "/api/v1/vetting/runs?"+q.Encode(), nil, &runs); err != nil {
			return fmt.Errorf("vet list: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, runs)
		}
		printVetRuns(s.out, runs)
		return nil
	case "show":
		if err := c.Do(ctx, "GET", runPath(""), nil, &r); err != nil {
			return fmt.Errorf("vet show: %w", err)
		}
		return show(r)
	case "stop", "release":
		if err := c.Do(ctx, "POST", runPath("/"+sub), nil, &r); err != nil {
			return fmt.Errorf("vet %s: %w", sub, err)
		}
		return show(r)
	case "report":
		name := "/report.json"
		if *html {
			name = "/report.html"
		}
		resp, err := c.Send(ctx, "GET", runPath(name), nil, "", nil)
		if err != nil {
			return fmt.Errorf("vet report: %w", err)
		}
		defer resp.Body.Close()
		w := s.out
		if *outFile != "" {
			f, err := os.Create(*outFile)
			if err != nil {
				return fmt.Errorf("vet report: %w", err)
			}
			defer f.Close()
			w = f
		}
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("vet report: %w", err)
		}
		return nil
	case "tunnel":
		return vetTunnel(ctx, c, runPath("/tunnel"), s)
	case "ssh":
		return vetSSHLogin(ctx, c, &o, pos[0], runPath("/ssh"), args, s)
	}
	return nil
}

func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			return b.String(), err
		}
	}
}

func printVetRuns(w io.Writer, runs []vetRun) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tHOST\tSTATE\tPROFILE\tCREATED\tSUMMARY")
	for _, r := range runs {
		state := r.State
		if r.State == "running" && r.Stage != "" {
			state = fmt.Sprintf("running %s %.0f%%", r.Stage, r.Progress*100)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Host, state, r.Profile, r.Created.Local().Format("2006-01-02 15:04"), r.Summary)
	}
	tw.Flush()
}

func printVetRun(w io.Writer, r vetRun) {
	fmt.Fprintf(w, "run %s of %s: %s (profile %s", r.ID, r.Host, r.State, r.Profile)
	if r.Hold {
		fmt.Fprint(w, ", hold on failure")
	}
	if r.Wipe {
		fmt.Fprint(w, ", destructive")
	}
	fmt.Fprintln(w, ")")
	if r.State == "running" && r.Stage != "" {
		fmt.Fprintf(w, "stage %s %.0f%%\n", r.Stage, r.Progress*100)
	}
	for _, st := range r.Stages {
		fmt.Fprintf(w, "  %-8s %-8s %s\n", st.Name, st.Status, st.Summary)
	}
	if r.Summary != "" && r.Summary != r.State {
		fmt.Fprintln(w, r.Summary)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  %s %s: %s\n", f.Status, f.Source, f.Message)
	}
	if r.Error != "" {
		fmt.Fprintln(w, "error:", r.Error)
	}
	if r.Holding != nil {
		fmt.Fprintf(w, "held at %s: kiln vet ssh %s (or %s)\n", r.Holding.Addr, r.ID, r.Holding.SSHCommand)
	}
	if r.ReportURL != "" {
		fmt.Fprintf(w, "report: kiln vet report %s --html -o run-%s.html\n", r.ID, r.ID)
	}
}

// vetTunnel connects standard input and output to the held host's SSH
// server through the appliance: ssh's ProxyCommand.
func vetTunnel(ctx context.Context, c *apiclient.Client, path string, s stdio) error {
	if err := c.Tunnel(ctx, path, s.in, s.out); err != nil {
		return fmt.Errorf("vet tunnel: %w", err)
	}
	return nil
}

// vetSSHLogin logs in to a held host with the run's key: OpenSSH's ssh
// through kiln vet tunnel, the host key pinned to what the agent reported.
func vetSSHLogin(ctx context.Context, c *apiclient.Client, o *apiclient.Options, run, path string, command []string, s stdio) error {
	var k vetSSH
	if err := c.Do(ctx, "GET", path, nil, &k); err != nil {
		return fmt.Errorf("vet ssh: %w", err)
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return fmt.Errorf("vet ssh: no ssh client: install OpenSSH's (Debian: openssh-client)")
	}
	dir, err := os.MkdirTemp("", "kiln-vet-ssh-")
	if err != nil {
		return fmt.Errorf("vet ssh: %w", err)
	}
	defer os.RemoveAll(dir)
	key, known := filepath.Join(dir, "run.key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, []byte(k.PrivateKey), 0o600); err != nil {
		return fmt.Errorf("vet ssh: %w", err)
	}
	if err := os.WriteFile(known, []byte(k.KnownHosts+"\n"), 0o600); err != nil {
		return fmt.Errorf("vet ssh: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("vet ssh: %w", err)
	}
	proxy := shellQuote(self) + " vet tunnel " + shellQuote(run)
	if o.URL != "" {
		proxy += " --url " + shellQuote(o.URL)
	}
	if o.Credentials != "" {
		proxy += " --credentials " + shellQuote(o.Credentials)
	}
	host, port := k.Addr, "22"
	if i := strings.LastIndex(k.Addr, ":"); i >= 0 {
		host, port = k.Addr[:i], k.Addr[i+1:]
	}
	sshArgs := []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + known,
		"-o", "StrictHostKeyChecking=yes", "-o", "ProxyCommand=" + proxy, "-p", port, k.User + "@" + host}
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	cmd := exec.CommandContext(ctx, sshBin, append(sshArgs, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.in, s.out, s.err
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("vet ssh: ssh exited with %d", ee.ExitCode())
		}
		return fmt.Errorf("vet ssh: %w", err)
	}
	return nil
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
