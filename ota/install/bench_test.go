package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

// BenchmarkInstallVsRawWrite installs a bundle with a 64 MiB root into a
// file-backed "partition" and writes the same bytes sequentially to another
// file (1 MiB writes, then fsync), and reports the install's throughput as a
// fraction of the raw write's (install/raw, 1.0 = as fast as a plain copy;
// the install also hashes while writing, fsyncs, drops the cache and reads
// everything back).
func BenchmarkInstallVsRawWrite(b *testing.B) {
	const rootSize = 64 << 20
	rel := makeRelease(3, rootSize)
	data := rel.bundle(b, signer)
	dir := b.TempDir()
	var rawTotal, instTotal time.Duration
	for i := 0; i < b.N; i++ {
		// Raw sequential write of the root payload.
		raw := filepath.Join(dir, "raw.img")
		os.Remove(raw)
		start := time.Now()
		f, err := os.Create(raw)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(rel.root); off += chunk {
			if _, err := f.Write(rel.root[off:min(off+chunk, len(rel.root))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		rawTotal += time.Since(start)
		os.Remove(raw)

		// The same bytes through the installer.
		espDir := filepath.Join(dir, "esp")
		os.RemoveAll(espDir)
		esp := espfs.Dir{Root: espDir}
		esp.MkdirAll(bootentry.Dir)
		cur := newRelease(2, 10)
		if err := slots.Write(esp, cur.entry(partitions.SlotA, nil)); err != nil {
			b.Fatal(err)
		}
		part := filepath.Join(dir, "root-b.img")
		if err := os.WriteFile(part, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		os.Truncate(part, rootSize+chunk)
		state := filepath.Join(dir, "state.json")
		os.Remove(state)
		in := &Installer{
			ESP: esp, Running: partitions.SlotA, State: &slots.Store{Path: state}, LockPath: filepath.Join(dir, "ota.lock"),
			Keys: []bundle.PublicKey{{Key: signer.Public().(ed25519.PublicKey)}}, Compatible: "kiln-x86_64",
			Target: func(partitions.Slot) (Target, error) {
				return Target{RootUUID: uuidB, Open: func() (Device, error) { return OpenDevice(part, 0) }}, nil
			},
		}
		start = time.Now()
		if _, err := in.Install(context.Background(), bytes.NewReader(data), Request{}); err != nil {
			b.Fatal(err)
		}
		instTotal += time.Since(start)
		os.Remove(part)
	}
	mbps := func(d time.Duration) float64 { return float64(rootSize) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mbps(rawTotal), "raw-MiB/s")
	b.ReportMetric(mbps(instTotal), "install-MiB/s")
	b.ReportMetric(mbps(instTotal)/mbps(rawTotal), "install/raw")
	b.Logf("raw sequential write %.0f MiB/s, install %.0f MiB/s: install/raw = %.2f", mbps(rawTotal), mbps(instTotal), mbps(instTotal)/mbps(rawTotal))
}
