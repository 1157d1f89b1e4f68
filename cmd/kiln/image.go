package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/image"
	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/hosttool"
)

const imageUsage = `usage: kiln image build [flags]   build out/kiln.img and out/kiln.qcow2 (and --vmdk/--ova/--vhdx copies)
       kiln image convert --format qcow2|vmdk|ova|vhdx [--size 32G] IMAGE OUT   convert a raw image
       kiln image lock [--lock F]   pin the current Debian packages (make lock)
       kiln image fetch             download the pinned packages into the cache`

// runImage builds the appliance disk image or refreshes the package lock.
func runImage(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		fmt.Fprintln(s.err, imageUsage)
		return fmt.Errorf("image: no subcommand: %w", errUsage)
	}
	switch args[0] {
	case "build":
		return runImageBuild(ctx, args[1:], s)
	case "convert":
		return runImageConvert(ctx, args[1:], s)
	case "lock":
		return runImageLock(ctx, args[1:], s)
	case "fetch":
		return runImageFetch(ctx, args[1:], s)
	case "-h", "--help", "help":
		fmt.Fprintln(s.out, imageUsage)
		return nil
	}
	fmt.Fprintln(s.err, imageUsage)
	return fmt.Errorf("image: unknown subcommand %q: %w", args[0], errUsage)
}

func runImageBuild(ctx context.Context, args []string, s stdio) error {
	return imageBuild(ctx, args, s, image.HostStatfs)
}

// imageBuild is runImageBuild with the free-space check's Statfs passed in.
func imageBuild(ctx context.Context, args []string, s stdio, statfs image.Statfs) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(s.err)
	out := fs.String("out", "out/kiln.img", "raw disk image to write")
	qcow2 := fs.String("qcow2", "out/kiln.qcow2", "qcow2 copy to write (empty: none)")
	isoOut := fs.String("iso", "", "live ISO to write (hybrid: CD-ROM or dd to a stick; BIOS and UEFI; empty: none)")
	lock := fs.String("lock", "image/packages.lock", "package lock file")
	cache := fs.String("cache", "out/cache/debs", "directory caching downloaded .debs")
	kiln := fs.String("kiln", "out/kiln", "kiln binary for /sbin/kiln")
	stage1 := fs.String("stage1", "out/kiln-stage1", "stage-1 binary for the initramfs /init")
	busybox := fs.String("busybox", "out/bb", "u-root busybox for /bin (empty: none; build with make out/bb)")
	agent := fs.String("agent", "", "kiln-agent binary: builds the vetting live image into the root and vet/ next to --out (make image passes out/kiln-agent; empty: no vetting image)")
	diskless := fs.String("diskless", "", "kiln-diskless binary: builds the diskless client image into the root and diskless/ next to --out (make image passes out/kiln-diskless; empty: none)")
	applianceID := fs.String("appliance-id", "kiln-dev", "appliance ID: seeds the disk GUID and partition UUIDs")
	version := fs.String("version", "dev", "release string shown in the boot menu and /etc/os-release")
	generation := fs.Int("generation", 1, "OTA generation of the image's boot entry")
	helloInit := fs.String("hello-init", "", "build a baseline image whose initramfs /init is this program")
	payloads := fs.String("payloads", "", "write only the payloads (vmlinuz, initrd, root.squashfs) to this directory")
	comp := fs.String("compression", image.DefaultCompression, "root squashfs compression: zstd or xz")
	copies := map[image.Format]*string{}
	for _, f := range image.Formats()[1:] {
		copies[f] = fs.String(string(f), "", string(f)+" copy to write (empty: none; see docs/image.md)")
	}
	var otaKeys []string
	fs.Func("ota-key", "update signing public key (NAME.pub of kiln keys gen) to trust; repeat for several", func(v string) error {
		otaKeys = append(otaKeys, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("image build: %w", errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("image build: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	l, err := debs.ReadLock(*lock)
	if err != nil {
		return err
	}
	spec := image.Spec{
		Lock: l, CacheDir: *cache, Kiln: *kiln, Stage1: *stage1, Busybox: *busybox, HelloInit: *helloInit, Agent: *agent, Diskless: *diskless,
		ApplianceID: *applianceID, Version: *version, Generation: *generation, Compression: *comp, OTAKeys: otaKeys,
		Logger: slog.New(slog.NewTextHandler(s.err, nil)),
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("image build:\n%w", err)
	}
	start := time.Now()
	work, err := os.MkdirTemp("", "kiln-image-")
	if err != nil {
		needs := []image.SpaceNeed{{Dir: os.TempDir(), Flag: "TMPDIR"}}
		return fmt.Errorf("image build: creating work dir: %w", image.NoSpace(err, needs, statfs))
	}
	defer os.RemoveAll(work)
	spec.WorkDir = work
	outPath := *out
	if *payloads != "" {
		outPath = *payloads
	}
	needs := image.SpaceNeeds(spec, outPath, *qcow2, work, *payloads != "")
	if *isoOut != "" && *payloads == "" {
		needs = append(needs, image.ISONeed(spec, *isoOut))
	}
	for _, f := range image.Formats()[1:] {
		if p := *copies[f]; p != "" && *payloads == "" {
			needs = append(needs, image.CopyNeed(spec, "--"+string(f), p))
		}
	}
	if err := image.CheckSpace(needs, statfs); err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	if err := hosttool.Check(image.RequiredTools(*qcow2 != "" && *payloads == "")...); err != nil {
		return fmt.Errorf("image build:\n%w", err)
	}

	if *payloads != "" {
		p, err := image.BuildPayloads(ctx, spec, work)
		if err != nil {
			return image.NoSpace(err, needs, statfs)
		}
		if err := image.WritePayloads(p, *payloads); err != nil {
			for _, name := range []string{image.PayloadKernel, image.PayloadInitrd, image.PayloadRoot} {
				os.Remove(filepath.Join(*payloads, name)) // partial payloads are useless
			}
			return image.NoSpace(err, needs, statfs)
		}
		for _, name := range []string{image.PayloadKernel, image.PayloadInitrd, image.PayloadRoot} {
			if err := printSum(s, filepath.Join(*payloads, name)); err != nil {
				return err
			}
		}
		fmt.Fprintf(s.out, "payloads for kernel %s built in %s\n", p.KernelRelease, time.Since(start).Round(time.Millisecond))
		return nil
	}
	res, err := image.Build(ctx, spec, *out) // removes its partial output itself
	if err != nil {
		return image.NoSpace(err, needs, statfs)
	}
	fmt.Fprintf(s.out, "%s  %s  (%d bytes; root squashfs %d bytes, initrd %d bytes, kernel %s)\n",
		res.SHA256, res.Path, res.Size, res.Payloads.RootSize, len(res.Payloads.Initrd), res.Payloads.KernelRelease)
	if res.Payloads.VetInitrd != nil {
		// The vetting live image, for a host-mode appliance (kiln serve) to hand out.
		vet := filepath.Join(filepath.Dir(*out), "vet")
		if err := image.WriteVet(res.Payloads, vet); err != nil {
			return image.NoSpace(err, needs, statfs)
		}
		for _, name := range []string{image.VetKernel, image.VetInitrd} {
			if err := printSum(s, filepath.Join(vet, name)); err != nil {
				return err
			}
		}
	}
	if res.Payloads.DisklessInitrd != nil {
		// The diskless client image, for a host-mode appliance (kiln serve) to hand out.
		dir := filepath.Join(filepath.Dir(*out), "diskless")
		if err := image.WriteDiskless(res.Payloads, dir); err != nil {
			return image.NoSpace(err, needs, statfs)
		}
		for _, name := range []string{image.DisklessKernel, image.DisklessInitrd} {
			if err := printSum(s, filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	if *qcow2 != "" {
		if err := image.ConvertQcow2(ctx, *out, *qcow2); err != nil {
			os.Remove(*qcow2) // a partial qcow2 must not look like an image
			return image.NoSpace(err, needs, statfs)
		}
		if err := printSum(s, *qcow2); err != nil {
			return err
		}
	}
	if *isoOut != "" {
		if err := image.WriteISO(ctx, spec, res.Payloads, *out, *isoOut); err != nil {
			return image.NoSpace(err, needs, statfs)
		}
		if err := printSum(s, *isoOut); err != nil {
			return err
		}
	}
	for _, f := range image.Formats()[1:] {
		p := *copies[f]
		if p == "" {
			continue
		}
		if err := image.Convert(ctx, *out, p, f, image.ConvertOptions{RawSHA256: res.SHA256}); err != nil {
			return image.NoSpace(err, needs, statfs)
		}
		if err := printSum(s, p); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.out, "image built in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func printSum(s stdio, path string) error {
	sum, size, err := image.HashFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "%s  %s  (%d bytes)\n", sum, path, size)
	return nil
}

// runImageConvert converts a raw image into a VM disk format, optionally with a
// larger virtual disk (the data partition grows into it on first boot).
func runImageConvert(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("image convert", flag.ContinueOnError)
	fs.SetOutput(s.err)
	format := fs.String("format", "", "qcow2, vmdk (VMware/VirtualBox), ova (vSphere, VMware, VirtualBox import) or vhdx (Hyper-V)")
	size := fs.String("size", "", "virtual disk size, e.g. 32G (default: the image's size)")
	name := fs.String("name", "kiln", "VM name in an OVA")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("image convert: %w", errUsage)
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(s.err, imageUsage)
		return fmt.Errorf("image convert: want IMAGE and OUT, got %d arguments: %w", fs.NArg(), errUsage)
	}
	f, err := image.ParseFormat(*format)
	if err != nil {
		return fmt.Errorf("image convert: --%w: %w", err, errUsage)
	}
	var vsize int64
	if *size != "" {
		if vsize, err = parseSize(*size); err != nil {
			return fmt.Errorf("image convert: --size: %w: %w", err, errUsage)
		}
	}
	if f == image.FormatQcow2 {
		if err := hosttool.Check(hosttool.QemuImg); err != nil {
			return fmt.Errorf("image convert: %w", err)
		}
	}
	if err := image.Convert(ctx, fs.Arg(0), fs.Arg(1), f, image.ConvertOptions{VirtualSize: vsize, Name: *name}); err != nil {
		return fmt.Errorf("image convert: %w", err)
	}
	return printSum(s, fs.Arg(1))
}

// parseSize parses a byte count with an optional binary suffix: 34359738368, 32G, 512M.
func parseSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "T"):
		mult, v = 1<<40, strings.TrimSuffix(v, "T")
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size: use bytes or a number with M, G or T (32G)", v)
	}
	return n * mult, nil
}

func runImageLock(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("image lock", flag.ContinueOnError)
	fs.SetOutput(s.err)
	lock := fs.String("lock", "image/packages.lock", "package lock file to write")
	cache := fs.String("cache", "out/cache/debs", "directory caching downloaded .debs")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("image lock: %w", errUsage)
	}
	l, err := debs.Cache{Dir: *cache}.Refresh(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*lock, l.Marshal(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *lock, err)
	}
	for _, p := range l.Pins {
		fmt.Fprintf(s.out, "%s %s %s\n", p.Name, p.Version, p.SHA256)
	}
	fmt.Fprintf(s.out, "wrote %s\n", *lock)
	return nil
}

func runImageFetch(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("image fetch", flag.ContinueOnError)
	fs.SetOutput(s.err)
	lock := fs.String("lock", "image/packages.lock", "package lock file")
	cache := fs.String("cache", "out/cache/debs", "directory caching downloaded .debs")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("image fetch: %w", errUsage)
	}
	l, err := debs.ReadLock(*lock)
	if err != nil {
		return err
	}
	for _, p := range l.Pins {
		path, err := debs.Cache{Dir: *cache}.Fetch(ctx, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "%s %s ok: %s\n", p.Name, p.Version, path)
	}
	return nil
}
