package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/api/wire"
)

// hostsViaAPI reports whether "kiln hosts …" goes through the API: always for
// list/get/add/rm; for import/export with --url, or when logged in and not
// given --state (which names a local database).
func hostsViaAPI(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "list", "get", "add", "rm", "registrations", "approve", "reject":
		return true
	case "import", "export":
		has := func(name string) bool {
			return slices.ContainsFunc(args[1:], func(a string) bool {
				a = strings.TrimLeft(a, "-")
				return a == name || strings.HasPrefix(a, name+"=")
			})
		}
		if has("state") {
			return false
		}
		if has("url") {
			return true
		}
		var o apiclient.Options
		for i, a := range args {
			if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "credentials="); ok {
				o.Credentials = v
			} else if strings.TrimLeft(a, "-") == "credentials" && i+1 < len(args) {
				o.Credentials = args[i+1]
			}
		}
		return o.LoggedIn()
	}
	return false
}

const hostsAPIUsage = `usage: kiln hosts list [--json]
       kiln hosts get NAME [--json]
       kiln hosts add NAME --mac MAC [--mac MAC…] [--profile P] [--ipv4 A] [--role R] [--spec-file F]
                      [--root-image IMAGE[@VERSION]] [--home HOME]
       kiln hosts rm NAME…
       kiln hosts registrations [--json]
       kiln hosts approve NAME|MAC…
       kiln hosts reject [--reason TEXT] NAME|MAC…
       kiln hosts import [--format yaml|csv] [--replace] FILE|-
       kiln hosts export [--format yaml|csv] [FILE|-]
  (through the API of the appliance of the last kiln login, or --url; import and export
   with --state DIR work on a local database instead)`

// runHostsAPI runs the hosts commands against the appliance's API.
func runHostsAPI(ctx context.Context, args []string, s stdio) error {
	verb := args[0]
	fs := flag.NewFlagSet("hosts "+verb, flag.ContinueOnError)
	fs.SetOutput(s.err)
	fs.Usage = func() { fmt.Fprintln(s.err, hostsAPIUsage) }
	var o apiclient.Options
	o.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var macs multiFlag
	profile, ipv4, role, specFile, format := new(string), new(string), new(string), new(string), new(string)
	rootImage, home := new(string), new(string)
	replace := new(bool)
	reason := new(string)
	switch verb {
	case "reject":
		fs.StringVar(reason, "reason", "", "shown on the machines' consoles, which ask for a name again")
	case "add":
		fs.Var(&macs, "mac", "a MAC address (repeat for several)")
		fs.StringVar(profile, "profile", "", "boot profile: local (default), vet, diskless, iscsi, kernel")
		fs.StringVar(ipv4, "ipv4", "", "reserved IPv4 address")
		fs.StringVar(role, "role", "", "role, e.g. worker")
		fs.StringVar(specFile, "spec-file", "", "YAML file with the expected hardware")
		fs.StringVar(rootImage, "root-image", "", "NFS root image of a diskless host: NAME (its promoted version) or NAME@VERSION")
		fs.StringVar(home, "home", "", "home export the host mounts read-write")
	case "import", "export":
		fs.StringVar(format, "format", "", "yaml or csv (default: from the file name; yaml for -)")
		if verb == "import" {
			fs.BoolVar(replace, "replace", false, "update hosts that already exist (by name) instead of refusing")
		}
	}
	// Flags may follow the positional arguments ("kiln hosts get pc-01 --json").
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("hosts %s: %v: %w", verb, err, errUsage)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("hosts %s: %w", verb, err)
	}
	switch verb {
	case "list":
		if len(pos) != 0 {
			return fmt.Errorf("hosts list: unexpected argument %q: %w", pos[0], errUsage)
		}
		hs, err := c.Hosts(ctx)
		if err != nil {
			return fmt.Errorf("hosts list: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, hs)
		}
		return printHosts(s.out, hs, time.Now())
	case "get":
		if len(pos) != 1 {
			return fmt.Errorf("hosts get: name one host: %w", errUsage)
		}
		var h map[string]any
		if err := c.Do(ctx, "GET", "/api/v1/hosts/"+url.PathEscape(pos[0]), nil, &h); err != nil {
			return fmt.Errorf("hosts get: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, h)
		}
		return printHost(s.out, h)
	case "add":
		if len(pos) != 1 {
			return fmt.Errorf("hosts add: name one host (kiln hosts add NAME --mac MAC): %w", errUsage)
		}
		in := wire.HostInput{Name: pos[0], MACs: macs, BootProfile: *profile, IPv4: *ipv4, Role: *role,
			RootImage: *rootImage, Home: *home}
		if *specFile != "" {
			b, err := os.ReadFile(*specFile)
			if err != nil {
				return fmt.Errorf("hosts add: --spec-file: %w", err)
			}
			in.ExpectedSpec = string(b)
		}
		if macs == nil {
			in.MACs = []string{}
		}
		h, err := c.CreateHost(ctx, in)
		if err != nil {
			return fmt.Errorf("hosts add: %s:\n%w", pos[0], err)
		}
		fmt.Fprintf(s.out, "added %s (%s)\n", h.Name, strings.Join(h.MACs, ", "))
		return nil
	case "rm":
		if len(pos) == 0 {
			return fmt.Errorf("hosts rm: name the hosts to remove: %w", errUsage)
		}
		for _, n := range pos {
			if err := c.DeleteHost(ctx, n); err != nil {
				return fmt.Errorf("hosts rm: %s: %w", n, err)
			}
			fmt.Fprintf(s.out, "removed %s\n", n)
		}
		return nil
	case "registrations":
		if len(pos) != 0 {
			return fmt.Errorf("hosts registrations: unexpected argument %q: %w", pos[0], errUsage)
		}
		var rs []registrationJSON
		if err := c.Do(ctx, "GET", "/api/v1/registrations", nil, &rs); err != nil {
			return fmt.Errorf("hosts registrations: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, rs)
		}
		return printRegistrations(s.out, rs, time.Now())
	case "approve", "reject":
		if len(pos) == 0 {
			return fmt.Errorf("hosts %s: name the registrations (the name each asks for, or its MAC; kiln hosts registrations lists them): %w", verb, errUsage)
		}
		var res []struct {
			Registration, MAC, Name, Error string
		}
		in := map[string]any{"registrations": pos}
		if *reason != "" {
			in["reason"] = *reason
		}
		if err := c.Do(ctx, "POST", "/api/v1/registrations/"+verb, in, &res); err != nil {
			return fmt.Errorf("hosts %s: %w", verb, err)
		}
		failed := 0
		for _, r := range res {
			if r.Error != "" {
				failed++
				fmt.Fprintf(s.err, "%s: %s\n", r.Registration, r.Error)
				continue
			}
			fmt.Fprintf(s.out, "%s %s (%s)\n", map[string]string{"approve": "approved", "reject": "rejected"}[verb], r.Name, r.MAC)
		}
		if failed > 0 {
			return fmt.Errorf("hosts %s: %d of %d not done (see above)", verb, failed, len(res))
		}
		return nil
	case "import":
		if len(pos) != 1 {
			return fmt.Errorf("hosts import: want one file name (or - for standard input): %w", errUsage)
		}
		f, err := fileFormat(*format, pos[0])
		if err != nil {
			return fmt.Errorf("hosts import: %w", err)
		}
		var r io.Reader = s.in
		if pos[0] != "-" {
			fh, err := os.Open(pos[0])
			if err != nil {
				return fmt.Errorf("hosts import: %w", err)
			}
			defer fh.Close()
			r = fh
		}
		q := "?format=" + f
		if *replace {
			q += "&replace=true"
		}
		resp, err := c.Send(ctx, "POST", "/api/v1/hosts/import"+q, r, "application/octet-stream", nil)
		if err != nil {
			return fmt.Errorf("hosts import: %s: nothing was imported, fix these and run again:\n%w", pos[0], err)
		}
		defer resp.Body.Close()
		var res wire.ImportResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return fmt.Errorf("hosts import: %w", err)
		}
		fmt.Fprintf(s.out, "imported %s: %d created, %d updated\n", pos[0], res.Created, res.Updated)
		return nil
	case "export":
		file := "-"
		switch len(pos) {
		case 0:
		case 1:
			file = pos[0]
		default:
			return fmt.Errorf("hosts export: want at most one file name: %w", errUsage)
		}
		f, err := fileFormat(*format, file)
		if err != nil {
			return fmt.Errorf("hosts export: %w", err)
		}
		resp, err := c.Send(ctx, "GET", "/api/v1/hosts/export?format="+f, nil, "", nil)
		if err != nil {
			return fmt.Errorf("hosts export: %w", err)
		}
		defer resp.Body.Close()
		if file == "-" {
			_, err := io.Copy(s.out, resp.Body)
			return err
		}
		// 0600 as before: the export holds BMC addresses and the like.
		return atomicfile.Write(file, 0o600, func(f *os.File) error {
			_, err := io.Copy(f, resp.Body)
			return err
		})
	}
	fmt.Fprintln(s.err, hostsAPIUsage)
	return fmt.Errorf("hosts: unknown command %q: %w", verb, errUsage)
}

// fileFormat is --format, or the file's extension, or yaml for -.
func fileFormat(flagValue, file string) (string, error) {
	switch {
	case flagValue == "yaml" || flagValue == "csv":
		return flagValue, nil
	case flagValue != "":
		return "", fmt.Errorf("--format %q: use yaml or csv: %w", flagValue, errUsage)
	case file == "-":
		return "yaml", nil
	case strings.HasSuffix(strings.ToLower(file), ".csv"):
		return "csv", nil
	case strings.HasSuffix(strings.ToLower(file), ".yaml"), strings.HasSuffix(strings.ToLower(file), ".yml"):
		return "yaml", nil
	}
	return "", fmt.Errorf("%s: unknown host file format (name it .yaml, .yml or .csv, or pass --format): %w", file, errUsage)
}

func printHosts(w io.Writer, hs []wire.Host, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMACS\tPROFILE\tADDRESS\tLAST EVENT")
	for _, h := range hs {
		addr := "-"
		switch {
		case h.Lease != nil:
			addr = h.Lease.IP + " (" + h.Lease.State + ")"
		case h.IPv4 != "":
			addr = h.IPv4 + " (reserved)"
		}
		last := "-"
		if h.LastEvent != nil {
			last = h.LastEvent.Kind + " " + roundDuration(now.Sub(h.LastEvent.Time)) + " ago"
		}
		macs := strings.Join(h.MACs, ",")
		if macs == "" {
			macs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, macs, h.BootProfile, addr, last)
	}
	return tw.Flush()
}

// printHost writes one host's fields as "key: value" lines.
func printHost(w io.Writer, h map[string]any) error {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	order := []string{"name", "macs", "boot_profile", "role", "ipv4", "aliases", "lease", "last_event"}
	slices.SortStableFunc(keys, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		return ia - ib
	})
	for _, k := range keys {
		v := h[k]
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			v = strings.Join(parts, ", ")
		case map[string]any:
			var parts []string
			for _, kk := range []string{"ip", "state", "kind", "detail", "time", "expires"} {
				if vv, ok := x[kk]; ok {
					parts = append(parts, fmt.Sprintf("%s=%v", kk, vv))
				}
			}
			v = strings.Join(parts, " ")
		case string:
			if strings.Contains(x, "\n") {
				v = "|\n  " + strings.ReplaceAll(strings.TrimRight(x, "\n"), "\n", "\n  ")
			}
		}
		if _, err := fmt.Fprintf(w, "%s: %v\n", k, v); err != nil {
			return err
		}
	}
	return nil
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// registrationJSON is a registration at a machine's console as the API
// returns it.
type registrationJSON struct {
	MAC     string    `json:"mac"`
	Name    string    `json:"name"`
	Role    string    `json:"role,omitempty"`
	Client  string    `json:"client,omitempty"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
}

func printRegistrations(w io.Writer, rs []registrationJSON, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tROLE\tFROM\tSTATE\tASKED")
	for _, r := range rs {
		state := r.State
		if r.Reason != "" {
			state += ": " + r.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", r.Name, r.MAC, dash(r.Role), dash(r.Client), state, roundDuration(now.Sub(r.Created)))
	}
	return tw.Flush()
}
