// Package image builds kiln's disk image: it fetches the pinned Debian packages,
// computes the kernel module closures, writes the initramfs, stages and squashes
// the root filesystem, writes the ESP with systemd-boot and the first boot entry,
// and lays everything out in a GPT image that is byte-identical across builds
// from the same inputs.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/disk"
	"kiln.dev/kiln/image/esp"
	"kiln.dev/kiln/image/hosttool"
	"kiln.dev/kiln/image/initramfs"
	"kiln.dev/kiln/image/kmod"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/partitions"
)

// Spec is what an image is built from.
type Spec struct {
	Lock        debs.Lock // pinned packages
	CacheDir    string    // .deb cache (kept between builds)
	Kiln        string    // the kiln multi-call binary → /sbin/kiln
	Stage1      string    // stage-1 binary → /init of the initramfs
	Busybox     string    // u-root busybox → /bin/bb (optional: no recovery shell tools without it)
	HelloInit   string    // when set, /init of the initramfs is this program instead (baseline image)
	Agent       string    // kiln-agent → /init of the vetting live image (optional: no live image without it)
	Diskless    string    // kiln-diskless → /init of the diskless client image (optional: none without it)
	OTAKeys     []string  // update signing public keys (*.pub) → /etc/kiln/ota-keys/ (several: key rotation)
	ApplianceID string    // seeds the disk GUID and partition UUIDs
	Version     string    // release string shown in the boot menu and os-release
	Generation  int       // OTA generation of the image's entry (≥ 1)
	Compression string    // root squashfs compressor: "zstd" (default) or "xz"
	WorkDir     string    // scratch space; a temporary directory when empty
	Logger      *slog.Logger
}

// Validate reports problems with the spec as operator-facing errors.
func (s Spec) Validate() error {
	var errs []error
	need := func(flag, p string) {
		if p == "" {
			errs = append(errs, fmt.Errorf("--%s: a path is required", flag))
			return
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			errs = append(errs, fmt.Errorf("--%s %s: not a readable file (build it first: see make image)", flag, p))
		}
	}
	if s.HelloInit != "" {
		need("hello-init", s.HelloInit)
	} else {
		need("stage1", s.Stage1)
	}
	need("kiln", s.Kiln)
	if s.Agent != "" && !fileExists(s.Agent) {
		errs = append(errs, fmt.Errorf("--agent %s: not a readable file: build it with make build (out/kiln-agent), or pass --agent '' for an image without the vetting live image", s.Agent))
	}
	if s.Diskless != "" && !fileExists(s.Diskless) {
		errs = append(errs, fmt.Errorf("--diskless %s: not a readable file: build it with make build (out/kiln-diskless), or pass --diskless '' for an image without the diskless client image", s.Diskless))
	}
	if s.Busybox != "" && !fileExists(s.Busybox) {
		errs = append(errs, fmt.Errorf("--busybox %s: not a readable file: build it with make out/bb (see image/busybox/README.md), or pass --busybox '' for an image without the recovery shell tools", s.Busybox))
	}
	for _, k := range s.OTAKeys {
		if !strings.HasSuffix(k, ".pub") {
			errs = append(errs, fmt.Errorf("--ota-key %s: want the public key file NAME.pub of kiln keys gen, not the private key", k))
		} else if _, err := bundle.ReadPublicKeyFile(k); err != nil {
			errs = append(errs, fmt.Errorf("--ota-key: %w", err))
		}
	}
	if s.ApplianceID == "" {
		errs = append(errs, errors.New("--appliance-id: must not be empty"))
	}
	if s.Generation < 1 || s.Generation > 99999999 {
		errs = append(errs, fmt.Errorf("--generation %d: must be 1 to 99999999", s.Generation))
	}
	if s.Version == "" || strings.ContainsAny(s.Version, "\n\"\\") {
		errs = append(errs, fmt.Errorf("--version %q: must be a non-empty single-line string without quotes or backslashes", s.Version))
	}
	switch s.Compression {
	case "", "xz", "zstd":
	default:
		errs = append(errs, fmt.Errorf("compression %q: use xz or zstd", s.Compression))
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (s Spec) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "image")
}

// DefaultCompression is the root squashfs compressor. zstd (level 15) builds the
// root about 4x faster than xz and the kernel decompresses it several times
// faster (boot under TCG reads the kiln binary through it), for ~14% more bytes
// in a 512 MiB slot; see docs/image.md.
const DefaultCompression = "zstd"

// RequiredTools lists the host tools a build runs (qemu-img only for a qcow2).
func RequiredTools(qcow2 bool) []hosttool.Tool {
	tools := []hosttool.Tool{hosttool.AptGet, hosttool.DpkgDeb, hosttool.Mksquashfs, hosttool.Ldd}
	if qcow2 {
		tools = append(tools, hosttool.QemuImg)
	}
	return tools
}

// Payloads are the slot-independent parts of a release: what an OTA bundle carries.
type Payloads struct {
	KernelRelease string
	Kernel        []byte    // vmlinuz
	Initrd        []byte    // gzip newc cpio
	RootPath      string    // root squashfs file (in the work dir)
	RootSize      int64     // squashfs (padded) and its hash tree
	RootVerity    string    // kiln.verity value of the root (image/verity.Params)
	BootEFI       []byte    // systemd-bootx64.efi
	BIOS          *biosBoot // GRUB's boot sector and core image (legacy BIOS boot)
	VetInitrd     []byte    // the vetting live image's initrd (gzip newc cpio); nil without Spec.Agent
	// DisklessInitrd is the diskless client image's initrd; nil without Spec.Diskless.
	DisklessInitrd []byte
}

// File names of payloads written by WritePayloads.
const (
	PayloadKernel = "vmlinuz"
	PayloadInitrd = "initrd"
	PayloadRoot   = "root.squashfs" // the squashfs, then its verity tree
	// PayloadRootVerity holds the root's kiln.verity value (one line).
	PayloadRootVerity = "root.verity"
)

// BuildPayloads builds kernel, initrd and root squashfs into work.
func BuildPayloads(ctx context.Context, s Spec, work string) (*Payloads, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	log := s.logger()
	cache := debs.Cache{Dir: s.CacheDir}
	kpin, err := s.Lock.Kernel()
	if err != nil {
		return nil, err
	}
	fetch := func(name string) (string, error) {
		p, ok := s.Lock.Get(name)
		if !ok {
			return "", fmt.Errorf("lock file pins no %s package: run make lock", name)
		}
		return cache.Fetch(ctx, p)
	}
	t0 := time.Now()
	kdeb, err := cache.Fetch(ctx, kpin)
	if err != nil {
		return nil, err
	}
	bootDeb, err := fetch("systemd-boot-efi")
	if err != nil {
		return nil, err
	}
	ipxeDeb, err := fetch("ipxe")
	if err != nil {
		return nil, err
	}
	log.Info("packages ready", "kernel", kpin.Name+" "+kpin.Version, "took", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	bios, err := buildBIOS(ctx, s, work)
	if err != nil {
		return nil, err
	}
	log.Info("GRUB core image built", "bytes", len(bios.CoreImg), "took", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	k, err := readKernel(ctx, kdeb, kpin.KernelRelease())
	if err != nil {
		return nil, err
	}
	rootMods, skipped, err := k.tree.Closure(rootModules, rootOptionalModules)
	if err != nil {
		return nil, fmt.Errorf("root module closure: %w", err)
	}
	initMods, _, err := k.tree.Closure(initramfsModules, nil)
	if err != nil {
		return nil, fmt.Errorf("initramfs module closure: %w", err)
	}
	var vetMods []*kmod.Module
	if s.Agent == "" && s.HelloInit == "" {
		log.Warn("no --agent: the image has no vetting live image (make image passes out/kiln-agent)")
	}
	if s.Agent != "" {
		var vetSkipped []string
		if vetMods, vetSkipped, err = k.tree.Closure(vetModules, vetOptionalModules); err != nil {
			return nil, fmt.Errorf("vetting image module closure: %w", err)
		}
		log.Info("vetting image modules", "modules", len(vetMods), "skipped_builtin_or_absent", strings.Join(vetSkipped, ","))
	}
	var disklessMods []*kmod.Module
	if s.Diskless != "" {
		req, opt := disklessModuleLists()
		if disklessMods, _, err = k.tree.Closure(req, opt); err != nil {
			return nil, fmt.Errorf("diskless client image module closure: %w", err)
		}
	}
	if err := k.keepModules(rootMods, initMods, vetMods, disklessMods); err != nil {
		return nil, err
	}
	log.Info("kernel read", "release", k.release, "root_modules", len(rootMods), "initramfs_modules", len(initMods),
		"skipped_builtin_or_absent", strings.Join(skipped, ","), "took", time.Since(t0).Round(time.Millisecond))

	p := &Payloads{KernelRelease: k.release, Kernel: k.vmlinuz, BIOS: bios}
	boot, err := debs.Extract(ctx, bootDeb, func(n string) bool { return n == "usr/lib/systemd/boot/efi/systemd-bootx64.efi" })
	if err != nil {
		return nil, err
	}
	if p.BootEFI = boot["usr/lib/systemd/boot/efi/systemd-bootx64.efi"]; p.BootEFI == nil {
		return nil, fmt.Errorf("%s has no systemd-bootx64.efi", bootDeb)
	}
	ipxeFiles := map[string]string{"boot/ipxe.efi": "ipxe.efi", "usr/lib/ipxe/snponly.efi": "snponly.efi", "usr/lib/ipxe/undionly.kpxe": "undionly.kpxe"}
	ipxe, err := debs.Extract(ctx, ipxeDeb, func(n string) bool { _, ok := ipxeFiles[n]; return ok })
	if err != nil {
		return nil, err
	}
	for src := range ipxeFiles {
		if ipxe[src] == nil {
			return nil, fmt.Errorf("%s has no /%s", ipxeDeb, src)
		}
	}

	// Initramfs.
	t0 = time.Now()
	initFiles, err := initramfsFiles(s, k, initMods)
	if err != nil {
		return nil, err
	}
	var ibuf bytes.Buffer
	if err := initramfs.Write(&ibuf, initFiles); err != nil {
		return nil, fmt.Errorf("writing initramfs: %w", err)
	}
	p.Initrd = ibuf.Bytes()
	log.Info("initramfs written", "bytes", len(p.Initrd), "took", time.Since(t0).Round(time.Millisecond))
	if s.Agent != "" {
		t0 = time.Now()
		if s.Busybox == "" {
			log.Warn("no --busybox: the vetting image's SSH hold has no shell")
		}
		if p.VetInitrd, err = vetInitrd(s, k, vetMods); err != nil {
			return nil, err
		}
		log.Info("vetting initrd written", "bytes", len(p.VetInitrd), "took", time.Since(t0).Round(time.Millisecond))
	}

	if s.Diskless != "" {
		t0 = time.Now()
		if p.DisklessInitrd, err = disklessInitrd(s, k, disklessMods); err != nil {
			return nil, err
		}
		log.Info("diskless initrd written", "bytes", len(p.DisklessInitrd), "modules", len(disklessMods), "took", time.Since(t0).Round(time.Millisecond))
	}

	// Root filesystem.
	t0 = time.Now()
	rt, err := rootTree(ctx, s, k, rootMods)
	if err != nil {
		return nil, err
	}
	for src, name := range ipxeFiles {
		rt.file("/usr/share/kiln/ipxe/"+name, 0o644, ipxe[src])
	}
	if p.VetInitrd != nil {
		rt.file(VetDir+"/"+VetKernel, 0o644, p.Kernel)
		rt.file(VetDir+"/"+VetInitrd, 0o644, p.VetInitrd)
	}
	if p.DisklessInitrd != nil {
		rt.file(DisklessDir+"/"+DisklessKernel, 0o644, p.Kernel)
		rt.file(DisklessDir+"/"+DisklessInitrd, 0o644, p.DisklessInitrd)
	}
	stage := filepath.Join(work, "rootfs")
	if err := os.RemoveAll(stage); err != nil {
		return nil, fmt.Errorf("clearing staging dir: %w", err)
	}
	if err := rt.materialize(stage); err != nil {
		return nil, err
	}
	p.RootPath = filepath.Join(work, PayloadRoot)
	comp := s.Compression
	if comp == "" {
		comp = DefaultCompression
	}
	if err := mksquashfs(ctx, stage, p.RootPath, comp); err != nil {
		return nil, err
	}
	vp, err := verity.Append(p.RootPath)
	if err != nil {
		return nil, err
	}
	p.RootVerity = vp.String()
	st, err := os.Stat(p.RootPath)
	if err != nil {
		return nil, fmt.Errorf("root squashfs: %w", err)
	}
	p.RootSize = st.Size()
	root, _ := partitions.ByRole(partitions.RoleRootA)
	if uint64(p.RootSize) > root.Size {
		return nil, fmt.Errorf("root squashfs with its verity tree is %d bytes, larger than the %d-byte root partition: grow partitions.RootSize", p.RootSize, root.Size)
	}
	log.Info("root squashfs built", "bytes", p.RootSize, "compression", comp, "took", time.Since(t0).Round(time.Millisecond))
	return p, nil
}

// initramfsFiles lists stage 1's initramfs: /init, the root-path modules and
// their module index, and the empty mount points.
func initramfsFiles(s Spec, k *kernelTree, mods []*kmod.Module) ([]initramfs.File, error) {
	initPath := s.Stage1
	if s.HelloInit != "" {
		initPath = s.HelloInit
	}
	initBin, err := os.ReadFile(initPath)
	if err != nil {
		return nil, fmt.Errorf("reading /init binary: %w", err)
	}
	files := []initramfs.File{{Path: "/init", Mode: 0o755, Data: initBin}}
	for _, d := range []string{"/dev", "/proc", "/sys", "/newroot"} {
		files = append(files, initramfs.File{Path: d, Mode: 0o755, Dir: true})
	}
	modFiles, err := k.moduleFiles(mods)
	if err != nil {
		return nil, err
	}
	for name, data := range modFiles {
		files = append(files, initramfs.File{Path: "/lib/modules/" + k.release + "/" + name, Mode: 0o644, Data: data})
	}
	return files, nil
}

// rootTree stages the root filesystem.
func rootTree(ctx context.Context, s Spec, k *kernelTree, mods []*kmod.Module) (tree, error) {
	t := tree{}
	kiln, err := os.ReadFile(s.Kiln)
	if err != nil {
		return nil, fmt.Errorf("reading kiln binary: %w", err)
	}
	t.file("/sbin/kiln", 0o755, kiln)
	t.link("/sbin/init", "kiln")
	t.link("/sbin/modprobe", "kiln")
	if s.Busybox != "" {
		bb, err := os.ReadFile(s.Busybox)
		if err != nil {
			return nil, fmt.Errorf("reading busybox: %w", err)
		}
		t.file("/bin/bb", 0o755, bb)
		for _, c := range BusyboxCommands() {
			t.link("/bin/"+c, "bb")
		}
	}
	modFiles, err := k.moduleFiles(mods)
	if err != nil {
		return nil, err
	}
	for name, data := range modFiles {
		t.file("/lib/modules/"+k.release+"/"+name, 0o644, data)
	}
	t.file("/etc/kiln/kiln.yaml", 0o644, DefaultConfig())
	for _, k := range s.OTAKeys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("reading OTA key: %w", err)
		}
		t.file("/etc/kiln/ota-keys/"+filepath.Base(k), 0o644, b)
	}
	t.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/gosh\n"))
	t.file("/etc/group", 0o644, []byte("root:x:0:\n"))
	t.file("/etc/os-release", 0o644, osRelease(s.Version, s.Generation))
	t.link("/etc/resolv.conf", "/run/resolv.conf")
	t.link("/etc/mtab", "/proc/self/mounts")
	for _, b := range hostBinaries {
		if err := addHostBinary(ctx, t, b); err != nil {
			return nil, err
		}
	}
	if conf, err := os.ReadFile("/etc/mke2fs.conf"); err == nil {
		t.file("/etc/mke2fs.conf", 0o644, conf)
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/data", "/boot/efi", "/root"} {
		t.dir(d)
	}
	return t, nil
}

// WritePayloads writes vmlinuz, initrd, root.squashfs and root.verity into dir.
func WritePayloads(p *Payloads, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating payload dir: %w", err)
	}
	for name, data := range map[string][]byte{PayloadKernel: p.Kernel, PayloadInitrd: p.Initrd, PayloadRootVerity: []byte(p.RootVerity + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing payload %s: %w", name, err)
		}
	}
	if err := copyFile(p.RootPath, filepath.Join(dir, PayloadRoot)); err != nil {
		return fmt.Errorf("writing payload %s: %w", PayloadRoot, err)
	}
	return nil
}

// LoaderConf is the ESP's /loader/loader.conf. It has no "default" line: in
// systemd-boot 252 the newest entry with tries left wins without one.
const LoaderConf = "timeout 0\neditor no\nauto-entries no\n"

// espFiles lists the ESP of a fresh image: systemd-boot, loader.conf, the entry of
// slot A, GRUB's config, environment block and slot A's snippet (legacy BIOS),
// and kernel+initrd for both slots.
func espFiles(s Spec, p *Payloads) []esp.File {
	entry := bootentry.Entry{
		Generation: s.Generation,
		Slot:       partitions.SlotA,
		Version:    s.Version,
		RootUUID:   partitions.PartUUID(s.ApplianceID, partitions.RoleRootA),
		Verity:     p.RootVerity,
	}
	grubEnv, err := bootentry.EncodeGRUBEnv(nil)
	if err != nil {
		panic(err) // an empty block always fits
	}
	files := []esp.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: p.BootEFI},
		{Path: "loader/loader.conf", Data: []byte(LoaderConf)},
		{Path: bootentry.Dir + "/" + entry.FileName(), Data: bootentry.Render(entry)},
		{Path: bootentry.GRUBConfigPath, Data: bootentry.GRUBConfig()},
		{Path: bootentry.GRUBEnvPath, Data: grubEnv},
		{Path: bootentry.SlotGRUBPath(entry.Slot), Data: bootentry.RenderGRUB(entry)},
	}
	for _, slot := range []partitions.Slot{partitions.SlotA, partitions.SlotB} {
		files = append(files,
			esp.File{Path: strings.TrimPrefix(bootentry.KernelPath(slot), "/"), Data: p.Kernel},
			esp.File{Path: strings.TrimPrefix(bootentry.InitrdPath(slot), "/"), Data: p.Initrd})
	}
	return files
}

// volumeID derives the ESP's FAT serial number from the appliance ID.
func volumeID(applianceID string) uint32 {
	sum := sha256.Sum256([]byte("kiln/" + applianceID + "/esp-volume-id"))
	return binary.LittleEndian.Uint32(sum[:4])
}

// Result describes a built image.
type Result struct {
	Path     string
	Size     int64
	SHA256   string
	Payloads *Payloads
}

// Build builds the raw disk image at out.
func Build(ctx context.Context, s Spec, out string) (*Result, error) {
	work := s.WorkDir
	if work == "" {
		tmp, err := os.MkdirTemp("", "kiln-image-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		work = tmp
	}
	p, err := BuildPayloads(ctx, s, work)
	if err != nil {
		return nil, err
	}
	if err := WriteDisk(ctx, s, p, out); err != nil {
		return nil, err
	}
	sum, size, err := HashFile(out)
	if err != nil {
		return nil, err
	}
	return &Result{Path: out, Size: size, SHA256: sum, Payloads: p}, nil
}

// WriteDisk lays payloads out in a GPT image at out: the ESP, the root squashfs
// in both slots, a blank data partition.
func WriteDisk(ctx context.Context, s Spec, p *Payloads, out string) error {
	t0 := time.Now()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("creating output dir: %w", err)
	}
	tmp := out + ".tmp"
	f, err := disk.Create(tmp, s.ApplianceID)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	espPart, _ := partitions.ByRole(partitions.RoleESP)
	opts := esp.Options{
		Size:       int64(espPart.Size),
		VolumeID:   volumeID(s.ApplianceID),
		Label:      "KILN-ESP",
		HiddenSecs: uint32(espPart.Start / partitions.SectorSize),
	}
	if err := esp.Write(f, int64(espPart.Start), opts, espFiles(s, p)); err != nil {
		return fmt.Errorf("writing ESP: %w", err)
	}
	if err := writeBIOS(f, p.BIOS); err != nil {
		return err
	}
	for _, role := range []partitions.Role{partitions.RoleRootA, partitions.RoleRootB} {
		part, _ := partitions.ByRole(role)
		if err := writeAt(ctx, f, int64(part.Start), p.RootPath); err != nil {
			return fmt.Errorf("writing %s: %w", role, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing image: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("moving image into place: %w", err)
	}
	s.logger().Info("disk image written", "path", out, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// ConvertQcow2 writes a qcow2 copy of a raw image with qemu-img.
func ConvertQcow2(ctx context.Context, raw, out string) error {
	if _, err := hosttool.QemuImg.Run(ctx, "", "convert", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
		return fmt.Errorf("converting to qcow2: %w", err)
	}
	return nil
}

func writeAt(ctx context.Context, f *os.File, off int64, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = io.Copy(io.NewOffsetWriter(f, off), in)
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// HashFile returns a file's SHA-256 and size.
func HashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
