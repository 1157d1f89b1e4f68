package job

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMarkers(t *testing.T) {
	const n = "0123abcd"
	tests := []struct {
		line string
		want Marker
		ok   bool
	}{
		{ExitLine(n, 0), Marker{Exit: 0}, true},
		{ExitLine(n, 1), Marker{Exit: 1}, true},
		{ExitLine(n, 137), Marker{Exit: 137}, true},
		{ErrorLine(n, "mounting 9p:\nno such device"), Marker{Exit: -1, Error: "mounting 9p: no such device"}, true},
		{"kiln-guest " + n + " error ", Marker{Exit: -1, Error: "unknown error"}, true},
		{ExitLine("ffffffff", 0), Marker{}, false}, // another run's nonce
		{"kiln-guest " + n + " exit 256", Marker{}, false},
		{"kiln-guest " + n + " exit -1", Marker{}, false},
		{"kiln-guest " + n + " exit 0x1", Marker{}, false},
		{"kiln-guest " + n + " exit 00", Marker{}, false},
		{"kiln-guest " + n + " exit +1", Marker{}, false},
		{"kiln-guest " + n + " exit 0 trailing", Marker{}, false},
		{" " + ExitLine(n, 0), Marker{}, false}, // not at the line start
		{"kiln-guest " + n + " done", Marker{}, false},
		{"", Marker{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseMarker(n, tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseMarker(%q) = %+v, %v, want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := ParseMarker("", "kiln-guest  exit 0"); ok {
		t.Error("ParseMarker with an empty nonce matched")
	}
}

func FuzzParseMarker(f *testing.F) {
	f.Add("0123abcd", ExitLine("0123abcd", 3))
	f.Add("0123abcd", ErrorLine("0123abcd", "x"))
	f.Add("n", "kiln-guest n exit 99999999999999999999")
	f.Fuzz(func(t *testing.T, nonce, line string) {
		m, ok := ParseMarker(nonce, line)
		if !ok {
			return
		}
		if nonce == "" || !strings.HasPrefix(line, "kiln-guest "+nonce+" ") {
			t.Fatalf("ParseMarker(%q, %q) matched a line without the nonce", nonce, line)
		}
		if m.Error == "" && (m.Exit < 0 || m.Exit > 255) {
			t.Fatalf("ParseMarker(%q, %q) exit %d out of range", nonce, line, m.Exit)
		}
		if m.Error == "" && line != ExitLine(nonce, m.Exit) {
			t.Fatalf("ParseMarker(%q, %q) = exit %d, which renders differently", nonce, line, m.Exit)
		}
	})
}

func TestCmdline(t *testing.T) {
	p, err := CmdlineParam("/tmp/TestX1/001/job.json")
	if err != nil || p != "kiln.job=/tmp/TestX1/001/job.json" {
		t.Fatalf("CmdlineParam() = %q, %v", p, err)
	}
	for _, bad := range []string{"rel/job.json", "/tmp/a b/job.json", `/tmp/"x"`} {
		if _, err := CmdlineParam(bad); err == nil {
			t.Errorf("CmdlineParam(%q) = nil error, want a refusal", bad)
		}
	}
	tests := []struct {
		cmdline, want, wantErr string
	}{
		{"console=ttyS0 quiet kiln.job=/w/job.json\n", "/w/job.json", ""},
		{"kiln.job=/a kiln.job=/b", "/a", ""},
		{"console=ttyS0 -- kiln.job=/w/job.json", "", "no kiln.job="},
		{"kiln.job=w/job.json", "", "not an absolute path"},
		{"", "", "no kiln.job="},
	}
	for _, tt := range tests {
		got, err := FromCmdline(tt.cmdline)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FromCmdline(%q) error = %v, want one containing %q", tt.cmdline, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("FromCmdline(%q) = %q, %v, want %q", tt.cmdline, got, err, tt.want)
		}
	}
}

func FuzzFromCmdline(f *testing.F) {
	f.Add("console=ttyS0 kiln.job=/w/job.json")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := FromCmdline(s)
		if err == nil && (!filepath.IsAbs(p) || strings.ContainsAny(p, " \t\n")) {
			t.Fatalf("FromCmdline(%q) = %q, want an absolute path without spaces", s, p)
		}
	})
}

func TestJobRoundTrip(t *testing.T) {
	j := Job{
		Nonce: "0123abcd", Args: []string{"/tmp/x.test", "-test.run=^TestX$"}, Env: []string{"KILN_GUEST=1"},
		Dir: "/src/kiln/services/nfs", Modules: []string{"nfsd"}, ModuleTree: "/c/lib/modules/6.1.0-56-amd64",
		Modprobe: "/usr/sbin/modprobe", Shares: []Share{{Tag: "kilnshare0", Path: "/tmp/out"}},
	}
	p := filepath.Join(t.TempDir(), "job.json")
	if err := j.Write(p); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(j, got); diff != "" {
		t.Errorf("Read(Write(j)) mismatch (-want +got):\n%s", diff)
	}
	bad := []struct {
		name string
		edit func(*Job)
	}{
		{"nonce", func(j *Job) { j.Nonce = "a b" }},
		{"args", func(j *Job) { j.Args = []string{"x.test"} }},
		{"dir", func(j *Job) { j.Dir = "src" }},
		{"tree", func(j *Job) { j.ModuleTree = "" }},
		{"share root", func(j *Job) { j.Shares = []Share{{Tag: "t", Path: "/"}} }},
	}
	for _, b := range bad {
		jj := j
		b.edit(&jj)
		if err := jj.Validate(); err == nil {
			t.Errorf("Validate() with a bad %s = nil", b.name)
		}
	}
}
