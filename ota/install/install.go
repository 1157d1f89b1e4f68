// Package install puts an update bundle into the inactive slot, the one path
// push (HTTP upload, CLI) and pull (channel) share. It streams: the bundle is
// read once, from the network, never stored.
//
// # Order of the steps (why the appliance always boots)
//
//  1. Take the one-at-a-time lock (oplock); refuse unless the running slot's
//     entry is committed.
//  2. Verify manifest and signature, compatible string, generation above the
//     running one, not a generation that failed before (package bundle).
//     Until here nothing was changed.
//  3. Remove the target slot's boot entry and sync the directory: from now on
//     systemd-boot can only boot the running slot, whatever happens.
//  4. Stream kernel and initrd to temporary files in the slot's ESP
//     directory (durable), hashing them.
//  5. Stream the root squashfs onto the inactive partition while hashing,
//     fsync, drop the cache, read it back and compare.
//  6. Check the bundle ends there, re-read the kernel and initrd files and
//     compare, rename them into place and sync the directory.
//  7. Write the new entry last, with a try counter (+3-0 unless configured):
//     only now can systemd-boot pick the new slot, and everything it needs is
//     already durable. A power cut while the new generation first boots
//     costs one try; after the tries the older generation boots again.
//
// A crash anywhere leaves either no entry for the target slot (the running
// slot boots) or a complete one; TestCrashConsistency checks every crash
// point against the systemd-boot model of ota/bootentry.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"time"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

// DefaultTries is the try counter of a new entry: one try would lose a device
// to a single power cut during its first boot.
const DefaultTries = 3

// MaxTries is the highest try counter accepted.
const MaxTries = 9

// Errors callers branch on (HTTP status codes, CLI exit).
var (
	// ErrNotCommitted: the running slot is still on trial.
	ErrNotCommitted = errors.New("the running slot is not committed yet")
	// ErrFailedBefore: the generation failed before and was not asked for again.
	ErrFailedBefore = errors.New("this generation failed before")
	// ErrVerify: the written bytes did not read back as written.
	ErrVerify = errors.New("read-back verification failed")
	// ErrUnverified: the bundle's manifest carries no root_verity, so the
	// slot could not boot (stage 1 mounts roots only through dm-verity).
	ErrUnverified = errors.New("bundle has no verified root")
)

// Device is the target root partition.
type Device interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
	Size() int64
}

// cacheDropper is a Device that can drop its page cache, so a read-back reads
// the medium.
type cacheDropper interface {
	DropCache() error
}

// Target is the inactive slot's root partition.
type Target struct {
	// RootUUID is its PARTUUID (for the entry's root=).
	RootUUID string
	// Open opens it for writing; the installer closes it if it is an io.Closer.
	Open func() (Device, error)
}

// Installer installs bundles on one appliance.
type Installer struct {
	// ESP is the mounted ESP.
	ESP espfs.FS
	// Running is the running slot.
	Running partitions.Slot
	// State is the OTA state file.
	State *slots.Store
	// Keys are the trusted signing keys; Compatible the appliance's string
	// (bundle.Compatible() if empty).
	Keys       []bundle.PublicKey
	Compatible string
	// Target finds a slot's root partition.
	Target func(partitions.Slot) (Target, error)
	// LockPath is the one-at-a-time lock (oplock.DefaultPath if empty).
	LockPath string
	// Tries is the default try counter (DefaultTries if 0).
	Tries int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Log gets progress; nil discards.
	Log *slog.Logger
}

// Request tunes one install.
type Request struct {
	// Tries overrides the try counter (0: the installer's default).
	Tries int
	// RetryFailed installs a generation recorded as failed (an operator's
	// explicit choice; the pull schedule never sets it).
	RetryFailed bool
	// Source names where the bundle came from, for the lock and the log.
	Source string
}

// Result describes a finished install.
type Result struct {
	Slot       partitions.Slot `json:"slot"`
	Version    string          `json:"version"`
	Generation int             `json:"generation"`
	Entry      string          `json:"entry"`
	Tries      int             `json:"tries"`
	KeyID      string          `json:"key_id"`
	RootBytes  int64           `json:"root_bytes"`
	Took       time.Duration   `json:"took_ns"`
}

func (in *Installer) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

func (in *Installer) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log.With("component", "ota")
}

// Install reads a bundle from r and installs it into the inactive slot. On
// an error before the target's entry is removed nothing has changed; after
// it, the target slot is left without an entry (status: incomplete).
func (in *Installer) Install(ctx context.Context, r io.Reader, req Request) (Result, error) {
	start := in.now()
	tries := req.Tries
	if tries == 0 {
		tries = in.Tries
	}
	if tries == 0 {
		tries = DefaultTries
	}
	if tries < 1 || tries > MaxTries {
		return Result{}, fmt.Errorf("tries %d: must be 1 to %d", tries, MaxTries)
	}
	if in.ESP == nil || in.State == nil || in.Target == nil {
		return Result{}, errors.New("updates are unavailable: the ESP or the data partition is not mounted (see the boot problems in the recovery console)")
	}
	lockPath := in.LockPath
	if lockPath == "" {
		lockPath = oplock.DefaultPath
	}
	what := "install"
	if req.Source != "" {
		what += " from " + req.Source
	}
	lock, err := oplock.Acquire(lockPath, what)
	if err != nil {
		return Result{}, err
	}
	defer lock.Release()

	entries, _, err := slots.Scan(in.ESP)
	if err != nil {
		return Result{}, err
	}
	running, ok := slots.OfSlot(entries, in.Running)
	if !ok {
		return Result{}, fmt.Errorf("%w: the running slot %s has no boot entry", ErrNotCommitted, in.Running)
	}
	if running.Counter != nil {
		return Result{}, fmt.Errorf("%w: its entry %s still counts tries (health checks pending); wait for the commit, then install", ErrNotCommitted, running.FileName())
	}
	rec, err := in.State.Load()
	if err != nil {
		return Result{}, err
	}
	slot := in.Running.Other()
	tgt, err := in.Target(slot)
	if err != nil {
		return Result{}, fmt.Errorf("finding slot %s's root partition: %w", slot, err)
	}
	dev, err := tgt.Open()
	if err != nil {
		return Result{}, fmt.Errorf("opening slot %s's root partition: %w", slot, err)
	}
	if c, ok := dev.(io.Closer); ok {
		defer c.Close()
	}
	br, err := bundle.NewReader(r, bundle.Options{
		Keys: in.Keys, Compatible: in.Compatible, MinGeneration: running.Generation + 1,
		Limits: bundle.Limits{Root: dev.Size()},
		Check: func(m bundle.Manifest) error {
			if m.RootVerity == "" {
				return fmt.Errorf("%w: its manifest has no root_verity (a kiln without verified roots built it); rebuild it with this kiln: kiln image build --payloads DIR, then kiln update build --payloads DIR", ErrUnverified)
			}
			if f, failed := rec.FailedGeneration(m.Generation); failed && !req.RetryFailed {
				return fmt.Errorf("%w: generation %d (%s) %s; it is not installed again unless asked explicitly (push with --retry-failed)",
					ErrFailedBefore, m.Generation, f.Version, f.Reason)
			}
			return nil
		},
	})
	if err != nil {
		return Result{}, err
	}
	m := br.Manifest
	log := in.log().With("version", m.Version, "generation", m.Generation, "slot", slot)
	log.Info("installing", "key", br.KeyID, "source", req.Source, "root_bytes", mustPayload(m, bundle.RootName).Size)

	// From here on the target slot changes: record it first.
	if _, err := in.State.Update(func(r *slots.Record) error {
		*r = slots.Installing(*r, slot, m.Version, m.Generation, in.now())
		return nil
	}); err != nil {
		return Result{}, err
	}
	res, err := in.write(ctx, br, dev, tgt, slot, tries, entries, log)
	if err != nil {
		msg := err.Error()
		in.State.Update(func(r *slots.Record) error {
			sr := r.Slot(slot)
			sr.LastBoot = "install failed: " + msg
			r.SetSlot(slot, sr)
			return nil
		})
		log.Warn("install failed; slot has no boot entry", "err", err)
		return Result{}, err
	}
	res.KeyID = br.KeyID
	res.Took = in.now().Sub(start)
	if _, err := in.State.Update(func(r *slots.Record) error {
		*r = slots.Installed(*r, slot, m.Version, m.Generation, tries, in.now())
		return nil
	}); err != nil {
		log.Warn("recording the install", "err", err)
	}
	log.Info("installed; reboot to start it", "entry", res.Entry, "took", res.Took.Round(time.Millisecond))
	return res, nil
}

func mustPayload(m bundle.Manifest, name string) bundle.Payload {
	p, _ := m.Payload(name)
	return p
}

// write does steps 3 to 7.
func (in *Installer) write(ctx context.Context, br *bundle.Reader, dev Device, tgt Target, slot partitions.Slot, tries int, entries []bootentry.Entry, log *slog.Logger) (Result, error) {
	m := br.Manifest
	if err := slots.RemoveSlot(in.ESP, entries, slot); err != nil {
		return Result{}, err
	}
	dir := path.Dir(bootentry.KernelPath(slot))[1:] // "kiln/b"
	if err := in.ESP.MkdirAll(dir); err != nil {
		return Result{}, fmt.Errorf("creating %s on the ESP: %w", dir, err)
	}
	finals := map[string]string{
		bundle.KernelName: bootentry.KernelPath(slot)[1:],
		bundle.InitrdName: bootentry.InitrdPath(slot)[1:],
	}
	var rootBytes int64
	for {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		p, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Result{}, err
		}
		switch p.Name {
		case bundle.KernelName, bundle.InitrdName:
			tmp := finals[p.Name] + ".new"
			if _, err := in.ESP.WriteFile(tmp, p); err != nil {
				in.ESP.Remove(tmp)
				return Result{}, fmt.Errorf("writing %s: %w", p.Name, err)
			}
			log.Info("payload written", "payload", p.Name, "bytes", p.Size)
		case bundle.RootName:
			if err := writeRoot(ctx, dev, p, m.RootVerity, log); err != nil {
				return Result{}, err
			}
			rootBytes = p.Size
		}
	}
	// The bundle ended where it should (Next returned io.EOF): commit the
	// ESP files, then the entry.
	for _, name := range []string{bundle.KernelName, bundle.InitrdName} {
		tmp := finals[name] + ".new"
		b, err := in.ESP.ReadFile(tmp)
		if err != nil {
			return Result{}, fmt.Errorf("reading back %s: %w", tmp, err)
		}
		if got, want := sha(b), mustPayload(m, name).SHA256; got != want {
			return Result{}, fmt.Errorf("%w: %s on the ESP has SHA-256 %s, want %s (the ESP may be failing)", ErrVerify, tmp, got, want)
		}
		if err := in.ESP.Rename(tmp, finals[name]); err != nil {
			return Result{}, fmt.Errorf("moving %s into place: %w", finals[name], err)
		}
	}
	if err := in.ESP.SyncDir(dir); err != nil {
		return Result{}, fmt.Errorf("syncing %s: %w", dir, err)
	}
	e := bootentry.Entry{Generation: m.Generation, Slot: slot, Version: m.Version, RootUUID: tgt.RootUUID,
		Verity: m.RootVerity, Counter: &bootentry.Counter{Left: tries}}
	if err := slots.Write(in.ESP, e); err != nil {
		return Result{}, err
	}
	return Result{Slot: slot, Version: m.Version, Generation: m.Generation, Entry: e.FileName(), Tries: tries, RootBytes: rootBytes}, nil
}

// chunk is the unit of writes to the partition.
const chunk = 1 << 20

// writeRoot streams the root payload onto the partition, syncs it, and
// reads it back to compare.
func writeRoot(ctx context.Context, dev Device, p *bundle.PayloadReader, rootVerity string, log *slog.Logger) error {
	if p.Size > dev.Size() {
		return fmt.Errorf("%w: root.squashfs is %d bytes, the partition %d", bundle.ErrTooLarge, p.Size, dev.Size())
	}
	buf := make([]byte, chunk)
	var off int64
	next := p.Size / 4
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(p, buf)
		if n > 0 {
			if _, err := dev.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("writing the root partition at byte %d: %w", off, err)
			}
			off += int64(n)
			if off >= next && off < p.Size {
				log.Info("root partition", "written", off, "of", p.Size)
				next += p.Size / 4
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr // a corrupt or truncated payload: ErrCorrupt
		}
	}
	// io.ReadFull hides the payload's verdict at its end: ask again.
	if _, err := p.Read(buf[:1]); !errors.Is(err, io.EOF) {
		return err
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("syncing the root partition: %w", err)
	}
	if d, ok := dev.(cacheDropper); ok {
		if err := d.DropCache(); err != nil {
			log.Warn("dropping the page cache before the read-back", "err", err)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(dev, 0, p.Size)); err != nil {
		return fmt.Errorf("reading back the root partition: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%w: the root partition reads back with SHA-256 %s, want %s (the disk may be failing)", ErrVerify, got, p.SHA256)
	}
	// The tree's top must give the signed root hash, or stage 1 would refuse
	// the slot at boot (the data blocks' hashes the kernel checks as it reads).
	vp, err := verity.ParseParams(rootVerity)
	if err != nil {
		return fmt.Errorf("%w: manifest root_verity: %w", bundle.ErrFormat, err)
	}
	if err := verity.CheckRoot(dev, vp); err != nil {
		return fmt.Errorf("%w: the root payload's hash tree does not give the manifest's root_verity: %w (the bundle was built wrong)", ErrVerify, err)
	}
	log.Info("root partition written and verified", "bytes", p.Size)
	return nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
