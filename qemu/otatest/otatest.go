// Package otatest holds the tier-4 tests of over-the-air updates: they boot
// the built image in QEMU (OVMF, TCG) and update it through the management
// API with bundles made from the image's own payloads and signed with the
// development key the image trusts (make image bakes out/ota-dev.pub in;
// the tests find the private key at $KILN_OTA_KEY or next to the image).
// The helpers here extract the payloads, build the good and the broken
// bundles, and drive the appliance's API; the tests skip with the reason
// when the image, the key, QEMU or the host tools are missing.
package otatest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

// SigningKey returns the private key matching the image's trusted key:
// $KILN_OTA_KEY, else ota-dev.key next to the image, else <repo>/out/ota-dev.key.
func SigningKey(t testing.TB, image string) ed25519.PrivateKey {
	t.Helper()
	cands := []string{os.Getenv("KILN_OTA_KEY"), filepath.Join(filepath.Dir(image), "ota-dev.key")}
	if root, err := boottest.RepoRoot(); err == nil {
		cands = append(cands, filepath.Join(root, "out", "ota-dev.key"))
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue
		}
		k, err := bundle.ReadPrivateKeyFile(p)
		if err != nil {
			t.Fatalf("the OTA signing key: %v", err)
		}
		return k
	}
	t.Skip("tier 4 OTA skipped: no signing key (set KILN_OTA_KEY to the ota-dev.key whose .pub make image baked in)")
	return nil
}

// NeedTools skips t unless the host tools the bundle builders use exist.
func NeedTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mtype", "unsquashfs", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("tier 4 OTA skipped: %s not installed (apt-get install mtools squashfs-tools)", tool)
		}
	}
}

// Payloads are a release's kernel, initrd and root files (the root: a
// squashfs, then its verity tree), and the root's kiln.verity value.
type Payloads struct {
	Kernel, Initrd, Root string
	RootVerity           string
}

// ExtractPayloads takes slot a's kernel and initrd from the ESP of a raw
// image and its root squashfs (exactly the filesystem's bytes) from root-a,
// with its verity tree added again.
func ExtractPayloads(ctx context.Context, raw, dir string) (Payloads, error) {
	f, err := os.Open(raw)
	if err != nil {
		return Payloads{}, err
	}
	defer f.Close()
	parts, err := qemu.ReadGPT(f)
	if err != nil {
		return Payloads{}, err
	}
	byIndex := map[int]qemu.GPTPartition{}
	for _, p := range parts {
		byIndex[p.Index] = p
	}
	esp, rootA := byIndex[1], byIndex[2]
	p := Payloads{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Root: filepath.Join(dir, "root.squashfs")}
	for name, dst := range map[string]string{"/kiln/a/vmlinuz": p.Kernel, "/kiln/a/initrd": p.Initrd} {
		out, err := exec.CommandContext(ctx, "mtype", "-i", fmt.Sprintf("%s@@%d", raw, esp.Offset()), "::"+name).Output()
		if err != nil {
			return Payloads{}, fmt.Errorf("mtype %s: %w", name, err)
		}
		if err := os.WriteFile(dst, out, 0o644); err != nil {
			return Payloads{}, err
		}
	}
	sb := make([]byte, 96)
	if _, err := f.ReadAt(sb, rootA.Offset()); err != nil {
		return Payloads{}, err
	}
	if string(sb[:4]) != "hsqs" {
		return Payloads{}, fmt.Errorf("root-a does not start with a squashfs superblock")
	}
	used := int64(binary.LittleEndian.Uint64(sb[40:48]))
	size := (used + 4095) &^ 4095 // mksquashfs pads to 4 KiB
	root := make([]byte, size)
	if _, err := f.ReadAt(root, rootA.Offset()); err != nil {
		return Payloads{}, err
	}
	if err := os.WriteFile(p.Root, root, 0o644); err != nil {
		return Payloads{}, err
	}
	return p, addVerity(&p)
}

// addVerity appends the verity tree to p.Root as the image build does.
func addVerity(p *Payloads) error {
	vp, err := verity.Append(p.Root)
	p.RootVerity = vp.String()
	return err
}

// Repack unpacks a root squashfs, lets edit change the tree, and packs it
// again the way the image builder does.
func Repack(ctx context.Context, root, out string, edit func(dir string) error) error {
	dir := out + ".d"
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	if b, err := exec.CommandContext(ctx, "unsquashfs", "-no-progress", "-d", dir, root).CombinedOutput(); err != nil {
		return fmt.Errorf("unsquashfs: %v: %s", err, b)
	}
	if err := edit(dir); err != nil {
		return err
	}
	os.Remove(out)
	if b, err := exec.CommandContext(ctx, "mksquashfs", dir, out, "-noappend", "-all-root", "-reproducible", "-no-xattrs",
		"-mkfs-time", "0", "-all-time", "0", "-comp", "zstd", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs: %v: %s", err, b)
	}
	return nil
}

// BreakSquashfs keeps a squashfs's superblock but zeroes its metadata tables
// (inodes, directories, fragments, ids), so the kernel refuses to mount it.
func BreakSquashfs(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	inodeTable := binary.LittleEndian.Uint64(b[64:72])
	if inodeTable == 0 || inodeTable >= uint64(len(b)) {
		return fmt.Errorf("%s: inode table at %d is outside the file", in, inodeTable)
	}
	clear(b[inodeTable:])
	return os.WriteFile(out, b, 0o644)
}

// Cases are the payloads of the lifecycle tests, made from an image's own:
// Good (host name kiln-b), Broken (its management service binds an address
// the appliance lacks, so the health checks fail within 30 s) and
// Unmountable (its root squashfs does not mount, so stage 1 fails).
type Cases struct {
	Base, Good, Broken, Unmountable Payloads
}

// BuildCases extracts img's payloads into dir and derives the cases.
func BuildCases(ctx context.Context, img, dir string) (Cases, error) {
	raw := filepath.Join(dir, "disk.raw")
	if err := qemu.ConvertRaw(ctx, img, raw); err != nil {
		return Cases{}, err
	}
	base, err := ExtractPayloads(ctx, raw, dir)
	os.Remove(raw)
	if err != nil {
		return Cases{}, err
	}
	withConfig := func(name, config string) (Payloads, error) {
		p := base
		p.Root = filepath.Join(dir, name+".squashfs")
		if err := Repack(ctx, base.Root, p.Root, func(d string) error {
			return os.WriteFile(filepath.Join(d, "etc/kiln/kiln.yaml"), []byte(config), 0o644)
		}); err != nil {
			return p, err
		}
		return p, addVerity(&p)
	}
	c := Cases{Base: base, Unmountable: base}
	if c.Good, err = withConfig("b", "hostname: kiln-b\n"); err != nil {
		return c, err
	}
	// The management service cannot bind an address the appliance does not
	// have: it crash-loops and the API never answers.
	if c.Broken, err = withConfig("c", "hostname: kiln-c\nmanagement:\n  listen: 192.0.2.1\nupdate:\n  health_deadline: 30s\n"); err != nil {
		return c, err
	}
	c.Unmountable.Root = filepath.Join(dir, "d.squashfs")
	if err := BreakSquashfs(base.Root, c.Unmountable.Root); err != nil {
		return c, err
	}
	return c, addVerity(&c.Unmountable)
}

// Bundle signs p as version/generation with key.
func Bundle(p Payloads, version string, gen int, key ed25519.PrivateKey) ([]byte, error) {
	files := bundle.Files{Kernel: p.Kernel, Initrd: p.Initrd, Root: p.Root, RootVerity: p.RootVerity}
	m, err := bundle.NewManifest(bundle.Compatible(), version, gen, files)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := bundle.WriteFiles(&b, m, key, files); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// API talks to one appliance's management API over the forwarded HTTPS port.
type API struct {
	t     testing.TB
	base  string
	hc    *http.Client
	token string
}

// NewAPI returns a client for the VM's HTTPS port (its self-signed
// certificate is accepted).
func NewAPI(t testing.TB, vm *qemu.VM) *API {
	return &API{t: t, base: fmt.Sprintf("https://127.0.0.1:%d", vm.HTTPSPort()), hc: &http.Client{
		Timeout:   3 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}}
}

// passwordRE is the first-boot password line of PID 1.
var passwordRE = regexp.MustCompile(`kiln: admin password: (\S+)`)

// Login makes an admin API token with the first-boot password printed on the
// console (kept across reboots in *password). Without such a line (an image
// whose API has no accounts) calls go without credentials.
func (a *API) Login(ctx context.Context, vm *qemu.VM, password *string) {
	a.t.Helper()
	for _, l := range vm.Lines() {
		if m := passwordRE.FindStringSubmatch(l.Text); m != nil {
			*password = m[1]
		}
	}
	if *password == "" {
		return
	}
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	resp, err := a.send(ctx, "POST", "/api/v1/session", strings.NewReader(fmt.Sprintf(`{"user":"admin","password":%q}`, *password)), nil)
	if err != nil {
		a.t.Fatalf("logging in: %v", err)
	}
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		a.t.Fatalf("logging in: %s", resp.Status)
	}
	hdr := http.Header{"X-Csrf-Token": {sess.CSRF}}
	for _, c := range resp.Cookies() {
		hdr.Add("Cookie", c.Name+"="+c.Value)
	}
	resp, err = a.send(ctx, "POST", "/api/v1/tokens", strings.NewReader(`{"name":"otatest","scope":"admin"}`), hdr)
	if err != nil {
		a.t.Fatalf("making a token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Secret == "" {
		a.t.Fatalf("making a token: %s %v", resp.Status, err)
	}
	a.token = tok.Secret
}

func (a *API) send(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" && req.Header.Get("Cookie") == "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return a.hc.Do(req)
}

// Result is an API answer: the status and the body.
type Result struct {
	Code int
	Body string
}

// Do sends a request and reads the whole answer.
func (a *API) Do(ctx context.Context, method, path string, body io.Reader) (Result, error) {
	resp, err := a.send(ctx, method, path, body, http.Header{"Content-Type": {"application/x-tar"}})
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Result{Code: resp.StatusCode, Body: string(b)}, err
}

// Push uploads a bundle; query is e.g. "reboot=1&tries=2".
func (a *API) Push(ctx context.Context, b []byte, query string) Result {
	a.t.Helper()
	res, err := a.Do(ctx, "POST", "/api/v1/update/bundle?"+query, bytes.NewReader(b))
	if err != nil {
		a.t.Fatalf("pushing a bundle: %v", err)
	}
	return res
}

// Status returns both slots.
func (a *API) Status(ctx context.Context) slots.Status {
	a.t.Helper()
	res, err := a.Do(ctx, "GET", "/api/v1/update/status", nil)
	if err != nil || res.Code != http.StatusOK {
		a.t.Fatalf("update status: %v %d %s", err, res.Code, res.Body)
	}
	var st slots.Status
	if err := json.Unmarshal([]byte(res.Body), &st); err != nil {
		a.t.Fatalf("update status: %v: %s", err, res.Body)
	}
	return st
}

// Slot returns one slot of a status.
func Slot(st slots.Status, name string) slots.Slot {
	for _, s := range st.Slots {
		if string(s.Name) == name {
			return s
		}
	}
	return slots.Slot{}
}

// sha returns a hex SHA-256, for log lines.
func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}
