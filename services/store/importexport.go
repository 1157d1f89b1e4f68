package store

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Format is a host file format.
type Format string

// Host file formats.
const (
	FormatYAML Format = "yaml" // hosts: [ {name: …, macs: […], …} ]
	FormatCSV  Format = "csv"  // header row naming CSVColumns; lists space separated
)

// CSVColumns are the CSV columns in export order. An import file may use any
// subset in any order; name is required.
var CSVColumns = []string{"name", "macs", "role", "boot_profile", "ipv4", "aliases", "wol_mac",
	"switch_port", "circuit_id", "remote_id", "ipxe_binary", "kernel", "initrd", "cmdline", "root_image", "home", "expected_spec"}

// FormatOf guesses the format from a file name (.yaml, .yml, .csv).
func FormatOf(name string) (Format, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return FormatYAML, nil
	case ".csv":
		return FormatCSV, nil
	}
	return "", fmt.Errorf("%s: unknown host file format (name it .yaml, .yml or .csv, or pass --format)", name)
}

// hostRecord is a host as written in import/export files. Tokens are never
// exported: they are secrets and each appliance makes its own.
type hostRecord struct {
	Name         string   `yaml:"name"`
	MACs         []string `yaml:"macs,omitempty,flow"`
	Role         string   `yaml:"role,omitempty"`
	BootProfile  string   `yaml:"boot_profile,omitempty"`
	IPv4         string   `yaml:"ipv4,omitempty"`
	Aliases      []string `yaml:"aliases,omitempty,flow"`
	WoLMAC       string   `yaml:"wol_mac,omitempty"`
	SwitchPort   string   `yaml:"switch_port,omitempty"`
	CircuitID    string   `yaml:"circuit_id,omitempty"`
	RemoteID     string   `yaml:"remote_id,omitempty"`
	IPXEBinary   string   `yaml:"ipxe_binary,omitempty"`
	Kernel       string   `yaml:"kernel,omitempty"`
	Initrd       string   `yaml:"initrd,omitempty"`
	Cmdline      string   `yaml:"cmdline,omitempty"`
	RootImage    string   `yaml:"root_image,omitempty"`
	Home         string   `yaml:"home,omitempty"`
	ExpectedSpec string   `yaml:"expected_spec,omitempty"`
}

type hostsFile struct {
	Hosts []hostRecord `yaml:"hosts"`
}

func toRecord(h Host) hostRecord {
	r := hostRecord{Name: h.Name, MACs: h.MACs, Role: h.Role, BootProfile: string(h.BootProfile), Aliases: h.Aliases,
		WoLMAC: h.WoLMAC, SwitchPort: h.SwitchPort, CircuitID: h.CircuitID, RemoteID: h.RemoteID,
		IPXEBinary: h.IPXEBinary, Kernel: h.Kernel, Initrd: h.Initrd, Cmdline: h.Cmdline, RootImage: h.RootImage, Home: h.Home, ExpectedSpec: h.ExpectedSpec}
	if h.IPv4.IsValid() {
		r.IPv4 = h.IPv4.String()
	}
	return r
}

// parsedHost is one record of an import file with where its fields are.
type parsedHost struct {
	host  Host
	line  int            // line of the record
	lines map[string]int // field ("macs[1]") → line
}

func (p parsedHost) lineOf(field string) int {
	if l, ok := p.lines[field]; ok {
		return l
	}
	if base, _, ok := strings.Cut(field, "["); ok {
		if l, ok := p.lines[base]; ok {
			return l
		}
	}
	return p.line
}

// fromRecord converts a record; es gets malformed fields (only those the Host
// type cannot hold; Host.normalize checks the rest).
func fromRecord(r hostRecord, es *Errors) Host {
	h := Host{Name: r.Name, MACs: r.MACs, Role: r.Role, BootProfile: BootProfile(r.BootProfile), Aliases: r.Aliases,
		WoLMAC: r.WoLMAC, SwitchPort: r.SwitchPort, CircuitID: r.CircuitID, RemoteID: r.RemoteID,
		IPXEBinary: r.IPXEBinary, Kernel: r.Kernel, Initrd: r.Initrd, Cmdline: r.Cmdline, RootImage: r.RootImage, Home: r.Home, ExpectedSpec: r.ExpectedSpec}
	if r.IPv4 != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(r.IPv4))
		if err != nil || !a.Is4() {
			es.invalid("ipv4", "%q is not an IPv4 address", r.IPv4)
		}
		h.IPv4 = a
	}
	return h
}

// ParseHosts reads a host file without touching the database. Errors carry
// line numbers.
func ParseHosts(r io.Reader, f Format) ([]Host, error) {
	ps, err := parseHosts(r, f)
	hs := make([]Host, len(ps))
	for i, p := range ps {
		hs[i] = p.host
	}
	return hs, err
}

func parseHosts(r io.Reader, f Format) ([]parsedHost, error) {
	switch f {
	case FormatYAML:
		return parseYAML(r)
	case FormatCSV:
		return parseCSV(r)
	}
	return nil, fmt.Errorf("unknown host file format %q (use yaml or csv)", f)
}

func parseYAML(r io.Reader) ([]parsedHost, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var es Errors
	bad := func(line int, field, format string, args ...any) {
		es = append(es, &FieldError{Line: line, Field: field, Problem: fmt.Sprintf(format, args...), Err: ErrInvalid})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var seq *yaml.Node
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if k := root.Content[i]; k.Value == "hosts" {
				seq = root.Content[i+1]
			} else {
				bad(k.Line, k.Value, "unknown top-level field (the file holds hosts: [...])")
			}
		}
	}
	if seq == nil || seq.Kind != yaml.SequenceNode {
		if seq != nil && seq.Tag == "!!null" {
			return nil, es.err()
		}
		bad(root.Line, "hosts", "missing or not a list (write hosts: followed by - name: … entries)")
		return nil, es
	}
	known := map[string]bool{}
	for _, c := range CSVColumns {
		known[c] = true
	}
	var out []parsedHost
	for _, n := range seq.Content {
		p := parsedHost{line: n.Line, lines: map[string]int{}}
		if n.Kind != yaml.MappingNode {
			bad(n.Line, "hosts", "each entry must be a mapping (name: …, macs: […])")
			continue
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if !known[k.Value] {
				bad(k.Line, k.Value, "unknown field (known: %s)", strings.Join(CSVColumns, ", "))
				continue
			}
			p.lines[k.Value] = v.Line
			for j, e := range v.Content {
				p.lines[fmt.Sprintf("%s[%d]", k.Value, j)] = e.Line
			}
			if k.Value == "expected_spec" && v.Kind != yaml.ScalarNode {
				// A structured spec is kept as its YAML text.
				b, err := yaml.Marshal(v)
				if err != nil {
					bad(v.Line, "expected_spec", "%v", err)
					continue
				}
				n.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(b), Line: v.Line}
			}
		}
		var rec hostRecord
		if err := n.Decode(&rec); err != nil {
			bad(n.Line, "hosts", "%v", err)
			continue
		}
		var fes Errors
		p.host = fromRecord(rec, &fes)
		for _, e := range fes {
			e.Line = p.lineOf(e.Field)
		}
		es = append(es, fes...)
		out = append(out, p)
	}
	return out, es.err()
}

func parseCSV(r io.Reader) ([]parsedHost, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0
	cr.Comment = '#'
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var es Errors
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range CSVColumns {
			known = known || c == h
		}
		line, _ := cr.FieldPos(i)
		switch {
		case !known:
			es = append(es, &FieldError{Line: line, Field: fmt.Sprintf("column %d", i+1), Problem: fmt.Sprintf("unknown column %q (known: %s)", h, strings.Join(CSVColumns, ", ")), Err: ErrInvalid})
		case col[h] != 0:
			es = append(es, &FieldError{Line: line, Field: fmt.Sprintf("column %d", i+1), Problem: fmt.Sprintf("column %q appears twice", h), Err: ErrInvalid})
		default:
			col[h] = i + 1
		}
	}
	if col["name"] == 0 {
		es = append(es, &FieldError{Line: 1, Field: "header", Problem: "no name column (the first line must name the columns, e.g. name,macs,ipv4)", Err: ErrInvalid})
	}
	if len(es) > 0 {
		return nil, es
	}
	var out []parsedHost
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, append(es, &FieldError{Line: lineOfCSVErr(err), Field: "csv", Problem: err.Error(), Err: ErrInvalid})
		}
		line, _ := cr.FieldPos(0)
		get := func(c string) string {
			if i := col[c]; i > 0 && i <= len(rec) {
				return strings.TrimSpace(rec[i-1])
			}
			return ""
		}
		list := func(c string) []string {
			return strings.FieldsFunc(get(c), func(r rune) bool { return r == ' ' || r == ';' || r == ',' || r == '\t' })
		}
		r := hostRecord{Name: get("name"), MACs: list("macs"), Role: get("role"), BootProfile: get("boot_profile"),
			IPv4: get("ipv4"), Aliases: list("aliases"), WoLMAC: get("wol_mac"), SwitchPort: get("switch_port"),
			CircuitID: get("circuit_id"), RemoteID: get("remote_id"), IPXEBinary: get("ipxe_binary"),
			Kernel: get("kernel"), Initrd: get("initrd"), Cmdline: get("cmdline"),
			RootImage: get("root_image"), Home: get("home"), ExpectedSpec: raw(rec, col["expected_spec"])}
		if len(rec) > len(header) {
			es = append(es, &FieldError{Line: line, Field: "csv", Problem: fmt.Sprintf("%d fields, the header names %d", len(rec), len(header)), Err: ErrInvalid})
		}
		p := parsedHost{line: line}
		var fes Errors
		p.host = fromRecord(r, &fes)
		for _, e := range fes {
			e.Line = line
		}
		es = append(es, fes...)
		out = append(out, p)
	}
	return out, es.err()
}

// raw returns column i (1-based) untrimmed: spec text keeps its newlines.
func raw(rec []string, i int) string {
	if i > 0 && i <= len(rec) {
		return rec[i-1]
	}
	return ""
}

func lineOfCSVErr(err error) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Line
	}
	return 0
}

// ImportResult counts what an import did.
type ImportResult struct {
	Created, Updated int
}

// ImportHosts stores every host of a file in one transaction: all of them or,
// on any error, none. Without replace a host whose name exists is an error;
// with replace it is updated (its token kept), and MACs and addresses may move
// between hosts named in the file. Every problem is reported, with its line.
func (s *Store) ImportHosts(ctx context.Context, r io.Reader, f Format, replace bool) (ImportResult, error) {
	var res ImportResult
	ps, err := parseHosts(r, f)
	if err != nil {
		return res, err
	}
	var es Errors
	add := func(p parsedHost, e *FieldError) {
		e.Line, e.Host = p.lineOf(e.Field), p.host.Name
		es = append(es, e)
	}
	// Duplicates inside the file, reported against the later record.
	names, macs := map[string]parsedHost{}, map[string]parsedHost{}
	for _, p := range ps {
		name := strings.ToLower(strings.TrimSpace(p.host.Name))
		if q, dup := names[name]; dup && name != "" {
			add(p, &FieldError{Field: "name", Problem: fmt.Sprintf("%s is also on line %d", name, q.line), Err: ErrConflict})
		}
		names[name] = p
		for i, m := range p.host.MACs {
			n, err := NormalizeMAC(m)
			if err != nil {
				continue // normalize reports it
			}
			if q, dup := macs[n]; dup && q.line != p.line {
				add(p, &FieldError{Field: fmt.Sprintf("macs[%d]", i), Problem: fmt.Sprintf("%s is also listed for host %s on line %d", n, q.host.Name, q.line), Err: ErrConflict})
			}
			macs[n] = p
		}
	}
	if len(es) > 0 {
		return res, es
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		ids := map[string]int64{}
		for _, p := range ps {
			name := strings.ToLower(strings.TrimSpace(p.host.Name))
			var id int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM hosts WHERE name = ?`, name).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return fmt.Errorf("looking up %s: %w", name, err)
			}
			if !replace {
				add(p, &FieldError{Field: "name", Problem: fmt.Sprintf("%s already exists (import with --replace to update it)", name), Err: ErrConflict})
				continue
			}
			ids[name] = id
			// Free what the file may hand to another host it names.
			if _, err := tx.ExecContext(ctx, `DELETE FROM host_macs WHERE host_id = ?`, id); err != nil {
				return fmt.Errorf("clearing MACs of %s: %w", name, err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE hosts SET reserved_ipv4 = NULL, aliases = '' WHERE id = ?`, id); err != nil {
				return fmt.Errorf("clearing %s: %w", name, err)
			}
		}
		if len(es) > 0 {
			return es
		}
		for _, p := range ps {
			h := p.host
			var err error
			if id, ok := ids[strings.ToLower(strings.TrimSpace(h.Name))]; ok {
				h.ID = id
				_, err = s.updateHost(ctx, tx, h)
				res.Updated++
			} else {
				_, err = s.createHost(ctx, tx, h)
				res.Created++
			}
			var fes Errors
			if errors.As(err, &fes) {
				for _, e := range fes {
					add(p, e)
				}
			} else if err != nil {
				return fmt.Errorf("line %d: %w", p.line, err)
			}
		}
		return es.err()
	})
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

// ExportHosts writes every host in format f, ordered by name. Tokens are not
// written.
func (s *Store) ExportHosts(ctx context.Context, w io.Writer, f Format) error {
	hs, err := s.ListHosts(ctx)
	if err != nil {
		return err
	}
	switch f {
	case FormatYAML:
		file := hostsFile{Hosts: make([]hostRecord, 0, len(hs))}
		for _, h := range hs {
			file.Hosts = append(file.Hosts, toRecord(h))
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(file); err != nil {
			return fmt.Errorf("writing YAML: %w", err)
		}
		return enc.Close()
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(CSVColumns)
		for _, h := range hs {
			r := toRecord(h)
			cw.Write([]string{r.Name, strings.Join(r.MACs, " "), r.Role, r.BootProfile, r.IPv4, strings.Join(r.Aliases, " "),
				r.WoLMAC, r.SwitchPort, r.CircuitID, r.RemoteID, r.IPXEBinary, r.Kernel, r.Initrd, r.Cmdline, r.RootImage, r.Home, r.ExpectedSpec})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("writing CSV: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unknown host file format %q (use yaml or csv)", f)
}
