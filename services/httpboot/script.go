package httpboot

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"text/template"
)

//go:embed templates/*.ipxe.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.ipxe.tmpl"))

// Boot profiles (the store's values).
const (
	ProfileVet      = "vet"
	ProfileLocal    = "local"
	ProfileDiskless = "diskless"
	ProfileISCSI    = "iscsi"
	ProfileKernel   = "kernel"
)

// Host is what a script is rendered from.
type Host struct {
	Name    string
	Profile string
	// Enrolled marks a machine kiln enrolled by itself (role "unknown"):
	// with registration on it gets the registration form.
	Enrolled bool
	// Token authenticates the host's script URL; empty never matches.
	Token string
	// Reserved is the host's reserved IPv4 address (invalid: none); a
	// script is served only to it or to the address leased to the MAC.
	Reserved netip.Addr
	// RunToken is the bearer token of the host's vetting run (profile vet),
	// put on the live image's kernel command line.
	RunToken string
	// Kernel, Initrd and Cmdline are the kernel profile's artifacts (a path
	// below /files/ or an http(s) URL) and command line; for vet and diskless
	// they override the defaults of Options.
	Kernel, Initrd, Cmdline string
	// RootImage is the diskless root image, "<name>/<version>" (the
	// version promoted when the script is rendered); Home the name of the
	// home export. NFSRoot overrides the root export, "server:/path".
	RootImage, Home string
	// RootError says why the host's root image choice names no version
	// (shown on its console instead of booting).
	RootError string
	NFSRoot   string
	// ISCSITarget overrides the iscsi target IQN.
	ISCSITarget string
	// SAN is the iscsi host's login to kiln's own target (its names and
	// CHAP secrets in clear text); nil: a target without CHAP named by
	// Profiles.IQNPrefix or ISCSITarget.
	SAN *SANLogin
}

// SANLogin is what an iscsi host's iPXE needs to log in to its target on
// kiln: the target and initiator IQNs and the CHAP credentials, mutual
// ones (the target proves itself) when Reverse* are set.
type SANLogin struct {
	Target, Initiator                string
	Username, Password               string
	ReverseUsername, ReversePassword string
}

// Profiles carries the site-wide settings of the boot profiles.
type Profiles struct {
	// VetKernel and VetInitrd are the vetting live image below FilesRoot
	// (files missing there come from Options.VetImageRoot: the image's own
	// live image); VetCmdline is added to its command line.
	VetKernel, VetInitrd, VetCmdline string
	// DisklessKernel and DisklessInitrd are used when the host sets none;
	// NFSServer ("" = the script URL's host) exports the root images
	// (/roots/<name>/<version>) and homes (/homes/<name>).
	DisklessKernel, DisklessInitrd string
	NFSServer                      string
	// ISCSIServer ("" = the script URL's host) serves targets named
	// IQNPrefix:<name>; initiators are IQNPrefix:initiator:<name>.
	ISCSIServer, IQNPrefix string
	// Console is appended to Linux command lines.
	Console string
}

// DefaultProfiles returns the defaults used for unset fields.
func DefaultProfiles() Profiles {
	return Profiles{
		VetKernel:      "vet/vmlinuz",
		VetInitrd:      "vet/initrd",
		DisklessKernel: "diskless/vmlinuz",
		DisklessInitrd: "diskless/initrd",
		IQNPrefix:      "iqn.2025-01.dev.kiln",
		Console:        "console=tty0 console=ttyS0,115200",
	}
}

// scriptData fills the templates.
type scriptData struct {
	Name, MAC, Profile   string
	Base                 string
	KernelURL, InitrdURL string
	Cmdline              string
	NFSRoot, NFSHome     string
	SANURI, InitiatorIQN string
	CHAP                 SANLogin // Username "": no CHAP
	Reason               string
}

// errRecord is a host record the templates cannot use; its message is shown
// on the console.
type errRecord struct{ msg string }

func (e errRecord) Error() string { return e.msg }

// RenderScript renders the iPXE script booting h, whose MAC is mac
// (canonical form), for a client reaching kiln at base ("http://host:port").
func RenderScript(h Host, mac, base string, p Profiles) ([]byte, error) {
	d := scriptData{Name: h.Name, MAC: mac, Profile: h.Profile, Base: base}
	for field, v := range map[string]string{"name": h.Name, "kernel": h.Kernel, "initrd": h.Initrd,
		"cmdline": h.Cmdline, "nfs root": h.NFSRoot, "root image": h.RootImage, "home": h.Home, "iscsi target": h.ISCSITarget} {
		if bad(v) {
			return nil, errRecord{fmt.Sprintf("host %s: its %s contains control characters", safe(h.Name), field)}
		}
	}
	if why := ipxeSyntax(h.Cmdline); why != "" {
		return nil, errRecord{fmt.Sprintf("host %s: its cmdline contains %s", safe(h.Name), why)}
	}
	if h.Name == "" || strings.ContainsAny(h.Name, " \t$") {
		return nil, errRecord{"host record has no usable name"}
	}
	baseHost := hostOf(base)
	artifact := func(field, ref string) (string, error) {
		if ref == "" {
			return "", errRecord{fmt.Sprintf("host %s: profile %s needs a %s", h.Name, h.Profile, field)}
		}
		if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
			if strings.ContainsAny(ref, " \t") {
				return "", errRecord{fmt.Sprintf("host %s: its %s URL contains spaces", h.Name, field)}
			}
			return ref, nil
		}
		clean, err := cleanFilePath(ref)
		if err != nil {
			return "", errRecord{fmt.Sprintf("host %s: its %s is not a path below the files root", h.Name, field)}
		}
		return base + "/files/" + escapePath(clean) + "?mac=" + mac, nil
	}
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, " ")
	}
	var err error
	switch h.Profile {
	case ProfileVet:
		if d.KernelURL, err = artifact("kernel", or(h.Kernel, p.VetKernel)); err != nil {
			return nil, err
		}
		if d.InitrdURL, err = artifact("initrd", or(h.Initrd, p.VetInitrd)); err != nil {
			return nil, err
		}
		if h.RunToken == "" || !validToken(h.RunToken) {
			return nil, errRecord{fmt.Sprintf("host %s has no usable run token", h.Name)}
		}
		d.Cmdline = join("initrd=initrd", "kiln.mode=vet", "kiln.server="+base, "kiln.host="+h.Name,
			"kiln.mac="+mac, "kiln.token="+h.RunToken, p.Console, p.VetCmdline, h.Cmdline)
	case ProfileLocal:
	case ProfileDiskless:
		if d.KernelURL, err = artifact("kernel", or(h.Kernel, p.DisklessKernel)); err != nil {
			return nil, err
		}
		if d.InitrdURL, err = artifact("initrd", or(h.Initrd, p.DisklessInitrd)); err != nil {
			return nil, err
		}
		server := or(p.NFSServer, baseHost)
		d.NFSRoot = h.NFSRoot
		if d.NFSRoot == "" {
			if h.RootImage == "" && h.RootError != "" {
				return nil, errRecord{fmt.Sprintf("host %s: %s", h.Name, safe(h.RootError))}
			}
			if h.RootImage == "" {
				return nil, errRecord{fmt.Sprintf("host %s has the diskless profile but no root image: give it one (kiln hosts add/import --root-image NAME) or its role one (provisioning.nfs.roles)", h.Name)}
			}
			if !exportName(h.RootImage, 2) {
				return nil, errRecord{fmt.Sprintf("host %s: root image %q is not <name>/<version>", h.Name, safe(h.RootImage))}
			}
			d.NFSRoot = server + ":/roots/" + h.RootImage
		}
		if !exportSpec(d.NFSRoot) {
			return nil, errRecord{fmt.Sprintf("host %s: nfs root %q is not server:/path", h.Name, safe(d.NFSRoot))}
		}
		var home string
		if h.Home != "" {
			if !exportName(h.Home, 1) {
				return nil, errRecord{fmt.Sprintf("host %s: home %q is not a plain name", h.Name, safe(h.Home))}
			}
			d.NFSHome = server + ":/homes/" + h.Home
			home = "kiln.nfshome=" + d.NFSHome
		}
		// The host's own command line comes last: its kiln.overlay= (or
		// any other parameter) wins over the defaults before it.
		d.Cmdline = join("initrd=initrd", "kiln.nfsroot="+d.NFSRoot, home, "ip=dhcp", "kiln.mac="+mac,
			"kiln.host="+h.Name, p.Console, h.Cmdline)
	case ProfileISCSI:
		target, initiator := p.IQNPrefix+":"+h.Name, p.IQNPrefix+":initiator:"+h.Name
		if h.SAN != nil {
			if !chapSafe(h.SAN.Username, h.SAN.Password, false) || !chapSafe(h.SAN.ReverseUsername, h.SAN.ReversePassword, true) {
				// Never quote the values: they are secrets.
				return nil, errRecord{fmt.Sprintf("host %s: its CHAP credentials are empty or hold characters an iPXE script cannot carry; make new ones with kiln volumes chap %s", h.Name, h.Name)}
			}
			target, initiator, d.CHAP = h.SAN.Target, h.SAN.Initiator, *h.SAN
		}
		target = or(h.ISCSITarget, target)
		server := or(p.ISCSIServer, baseHost)
		if strings.ContainsAny(target+server+initiator, " \t$") || bad(target+initiator) || server == "" {
			return nil, errRecord{fmt.Sprintf("host %s: iSCSI target %q on %q is unusable", h.Name, safe(target), safe(server))}
		}
		d.SANURI = "iscsi:" + server + "::::" + target
		d.InitiatorIQN = initiator
	case ProfileKernel:
		if d.KernelURL, err = artifact("kernel", h.Kernel); err != nil {
			return nil, err
		}
		if h.Initrd != "" {
			if d.InitrdURL, err = artifact("initrd", h.Initrd); err != nil {
				return nil, err
			}
		}
		initrd := ""
		if d.InitrdURL != "" {
			initrd = "initrd=initrd"
		}
		d.Cmdline = join(initrd, h.Cmdline)
	default:
		return nil, errRecord{fmt.Sprintf("host %s has unknown boot profile %q", h.Name, safe(h.Profile))}
	}
	return execute(h.Profile, d)
}

// exportSpec accepts "server:/path" as the diskless client takes it: no
// spaces or commas (mount options), an absolute path.
func exportSpec(s string) bool {
	server, path, ok := strings.Cut(s, ":/")
	return ok && server != "" && path != "" && !strings.ContainsAny(s, " \t,\"'\\")
}

// exportName accepts parts '/'-separated plain names (letters, digits, '.',
// '-', '_'; not "." or "..").
func exportName(s string, parts int) bool {
	els := strings.Split(s, "/")
	if len(els) != parts {
		return false
	}
	for _, e := range els {
		if e == "" || e == "." || e == ".." {
			return false
		}
		for _, r := range e {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// RenderDenied renders the script answering a refused request.
func RenderDenied(reason string) []byte {
	b, err := execute("denied", scriptData{Reason: safe(reason)})
	if err != nil {
		// The denied template is embedded and takes one string: unreachable.
		return []byte("#!ipxe\nexit 1\n")
	}
	return b
}

// RenderDefault renders the fallback menu.
func RenderDefault(base string) ([]byte, error) {
	return execute("default", scriptData{Base: base})
}

func execute(name string, d any) ([]byte, error) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name+".ipxe.tmpl", d); err != nil {
		return nil, fmt.Errorf("rendering %s script: %w", name, err)
	}
	return buf.Bytes(), nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// bad reports control characters, which would break the script's lines.
func bad(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// ipxeSyntax says what in s iPXE would read as script syntax rather than
// kernel arguments on a "kernel" line, or "" for nothing. iPXE splits the
// line into words, honouring quotes and backslashes; a word "||", "&&" or
// ";" ends the command and a word starting with "#" comments out the rest
// (which would drop "|| goto failed"). Quotes and backslashes are refused:
// they change where iPXE's words begin, which would hide an operator from
// this check. ${settings} stay allowed (operators use them; they expand to
// the booting machine's own settings).
func ipxeSyntax(s string) string {
	if i := strings.IndexAny(s, "\"'\\"); i >= 0 {
		return fmt.Sprintf("%q, which iPXE reads as quoting", s[i:i+1])
	}
	for _, w := range strings.Fields(s) {
		switch {
		case w == "||" || w == "&&" || w == ";":
			return fmt.Sprintf("the iPXE operator %q", w)
		case strings.HasPrefix(w, "#"):
			return fmt.Sprintf("%q, which iPXE reads as the start of a comment", w)
		}
	}
	return ""
}

// chapSafe reports whether a CHAP user and secret can go on iPXE "set"
// lines as they are: both set (or, when optional, both empty) and made of
// characters iPXE reads literally — no spaces, quotes, backslashes, "$"
// (setting expansion) or "#". kiln's own secrets are letters and digits.
func chapSafe(user, secret string, optional bool) bool {
	if user == "" && secret == "" {
		return optional
	}
	if user == "" || secret == "" {
		return false
	}
	for _, c := range []byte(user + secret) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:@+/=", c) >= 0) {
			return false
		}
	}
	return true
}

// safe makes s printable on one script line.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '$' {
			return '?'
		}
		return r
	}, s)
}

// validToken accepts the URL-safe characters tokens are made of.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

var errBadPath = errors.New("bad path")

// cleanFilePath checks a path below the files root; unlike TFTP nothing is
// rewritten: anything but plain relative components is refused.
func cleanFilePath(p string) (string, error) {
	if p == "" || len(p) > 1024 || strings.ContainsRune(p, '\\') || bad(p) {
		return "", errBadPath
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return "", errBadPath
		}
	}
	return p, nil
}
