package config_test

import (
	"bufio"
	"encoding"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"kiln.dev/kiln/services/config"
)

// docPath is the config reference these tests keep honest.
const docPath = "../../docs/config.md"

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("reading the config reference: %v", err)
	}
	return string(b)
}

// TestDocsCoverEveryField fails for every field of config.Config whose path
// (e.g. `provisioning.subnets[].pool.start`) is not written in backticks in
// docs/config.md, so a new field cannot ship undocumented. It also fails for
// a row of a field table naming a path that is not in config.Config, so a
// removed or renamed field does not linger in the reference.
func TestDocsCoverEveryField(t *testing.T) {
	doc := readDoc(t)
	paths := yamlPaths(reflect.TypeFor[config.Config]())
	if len(paths) == 0 {
		t.Fatal("yamlPaths(config.Config) found no fields")
	}
	var missing []string
	for _, p := range paths {
		if !strings.Contains(doc, "`"+p+"`") {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/config.md does not document %d config field(s); add a table row for each (path in backticks, type, default, meaning, validation):\n\t%s",
			len(missing), strings.Join(missing, "\n\t"))
	}

	known := map[string]bool{}
	for _, p := range paths {
		known[p] = true
	}
	for _, row := range fieldTableRows(doc) {
		if !known[row.path] {
			t.Errorf("docs/config.md:%d: table row for `%s`, which is not a field of config.Config (fix the path or remove the row)", row.line, row.path)
		}
	}
}

// TestDocsExampleParses checks that the last ```yaml block of docs/config.md,
// the whole-appliance example, is a valid config.
func TestDocsExampleParses(t *testing.T) {
	example := lastYAMLBlock(readDoc(t))
	if example == "" {
		t.Fatal("docs/config.md has no ```yaml block; its last one must be a complete example config")
	}
	c, err := config.Parse(strings.NewReader(example))
	if err != nil {
		t.Fatalf("config.Parse(last yaml block of docs/config.md) = %v, want nil", err)
	}
	// The example is the one the brief asks for: a lab with a management
	// NIC and an authoritative subnet with a pool and a reservations file.
	if len(c.Network.WithRole(config.RoleManagement)) == 0 {
		t.Errorf("example: no network interface with role management")
	}
	authoritative := slices.ContainsFunc(c.Provisioning.Subnets, func(s config.Subnet) bool {
		return s.Mode == config.ModeAuthoritative && s.Pool.Start != ""
	})
	if !authoritative || c.Provisioning.HostsFile == "" || c.Provisioning.Domain == "" || len(c.Provisioning.UpstreamDNS) == 0 {
		t.Errorf("example: want an authoritative subnet with a pool, provisioning.hosts_file, provisioning.domain and provisioning.upstream_dns")
	}
}

// yamlPaths returns the path of every yaml field reachable from t, parents
// before children: nested structs as "a.b", slice elements as "a[].b", map
// values as "a.<name>" (and "a.<name>.b").
func yamlPaths(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if leaf(t) {
			return
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), prefix+"[]")
		case reflect.Map:
			p := prefix + ".<name>"
			out = append(out, p)
			walk(t.Elem(), p)
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() && !f.Anonymous { // yaml.v3 skips private fields but inlines embedded ones
					continue
				}
				name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "-" {
					continue
				}
				if slices.Contains(strings.Split(opts, ","), "inline") {
					walk(f.Type, prefix)
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name) // yaml.v3's default key
				}
				p := name
				if prefix != "" {
					p = prefix + "." + name
				}
				out = append(out, p)
				walk(f.Type, p)
			}
		}
	}
	walk(t, "")
	return out
}

// leaf reports whether yaml decodes t from a scalar itself rather than field
// by field.
func leaf(t reflect.Type) bool {
	if t == reflect.TypeFor[time.Duration]() || t == reflect.TypeFor[time.Time]() {
		return true
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(reflect.TypeFor[yaml.Unmarshaler]()) || pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

func TestYAMLPaths(t *testing.T) {
	type inner struct {
		Leaf  string        `yaml:"leaf"`
		Wait  time.Duration `yaml:"wait"`
		Items []string      `yaml:"items"`
	}
	type embedded struct {
		Flat int `yaml:"flat"`
	}
	type root struct {
		Name     string           `yaml:"name"`
		Nested   inner            `yaml:"nested"`
		List     []inner          `yaml:"list"`
		Ptr      *inner           `yaml:"ptr,omitempty"`
		ByName   map[string]inner `yaml:"by_name"`
		Flag     *bool            `yaml:"flag"`
		Skipped  string           `yaml:"-"`
		Untagged int
		embedded `yaml:",inline"`
		hidden   int
	}
	_ = root{}.hidden
	got := yamlPaths(reflect.TypeFor[root]())
	want := []string{
		"name",
		"nested", "nested.leaf", "nested.wait", "nested.items",
		"list", "list[].leaf", "list[].wait", "list[].items",
		"ptr", "ptr.leaf", "ptr.wait", "ptr.items",
		"by_name", "by_name.<name>", "by_name.<name>.leaf", "by_name.<name>.wait", "by_name.<name>.items",
		"flag", "untagged", "flat",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("yamlPaths(root) mismatch (-want +got):\n%s", diff)
	}
}

// tableRow is the path in the first cell of a row of a field table.
type tableRow struct {
	path string
	line int
}

// fieldTableRows returns the rows of the Markdown tables whose header's
// first cell is "field".
func fieldTableRows(doc string) []tableRow {
	var rows []tableRow
	inTable := false
	sc := bufio.NewScanner(strings.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(line, "|")
		first := strings.TrimSpace(cells[1])
		switch {
		case first == "field":
			inTable = true
		case !inTable || strings.Trim(first, "-: ") == "":
		case strings.HasPrefix(first, "`"):
			if p, _, ok := strings.Cut(first[1:], "`"); ok {
				rows = append(rows, tableRow{p, n})
			}
		}
	}
	return rows
}

func TestFieldTableRows(t *testing.T) {
	doc := "| field | type |\n|---|---|\n| `a.b` | string |\n| `c` (x) | int |\n\ntext\n| name | x |\n|---|---|\n| `mgmt` | y |\n"
	got := fieldTableRows(doc)
	want := []tableRow{{"a.b", 3}, {"c", 4}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(tableRow{})); diff != "" {
		t.Errorf("fieldTableRows mismatch (-want +got):\n%s", diff)
	}
}

// lastYAMLBlock returns the body of the last ```yaml fenced block.
func lastYAMLBlock(doc string) string {
	var last string
	rest := doc
	for {
		i := strings.Index(rest, "```yaml\n")
		if i < 0 {
			return last
		}
		rest = rest[i+len("```yaml\n"):]
		j := strings.Index(rest, "\n```")
		if j < 0 {
			return last
		}
		last = rest[:j+1]
		rest = rest[j+len("\n```"):]
	}
}

func TestLastYAMLBlock(t *testing.T) {
	doc := "# x\n```yaml\na: 1\n```\ntext\n```sh\nls\n```\n```yaml\nb: 2\nc: 3\n```\n"
	if got, want := lastYAMLBlock(doc), "b: 2\nc: 3\n"; got != want {
		t.Errorf("lastYAMLBlock(doc) = %q, want %q", got, want)
	}
	if got := lastYAMLBlock("no blocks"); got != "" {
		t.Errorf("lastYAMLBlock(no blocks) = %q, want empty", got)
	}
}
