package stages

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Storage measures every target disk: sequential read throughput, random
// read IOPS and latency percentiles with O_DIRECT, and read errors. It opens
// disks read-only unless Destructive is set (the run says the host may be
// wiped); then it also writes a pattern over the start of each disk and
// reads it back. SMART counters that grow with defects are compared before
// and after.
type Storage struct {
	Targets []Target `json:"targets"`
	// Duration bounds each phase (sequential, random, write) per disk.
	Duration time.Duration `json:"duration"`
	// BlockSize is the sequential transfer size (default 1 MiB); RandomSize
	// the random one (default 4 KiB); QueueDepth the concurrent random reads
	// (default 8).
	BlockSize  int `json:"block_size,omitempty"`
	RandomSize int `json:"random_size,omitempty"`
	QueueDepth int `json:"queue_depth,omitempty"`
	// Destructive allows the write/verify phase. Never set it unless the run
	// marks the host wipeable: it overwrites data.
	Destructive bool `json:"destructive,omitempty"`
	// WriteBytes caps the written region per disk (0: as much as Duration
	// allows).
	WriteBytes int64 `json:"write_bytes,omitempty"`
	// SMART reads health before and after; nil skips it.
	SMART SMARTReader `json:"-"`
}

// Target is one disk (or, in tests, a file) to measure.
type Target struct {
	// Name appears in measurement names ("sda").
	Name string `json:"name"`
	// Path is the device node ("/dev/sda").
	Path string `json:"path"`
	// Size in bytes; 0 asks the device.
	Size int64 `json:"size,omitempty"`
}

// SMARTReader reads a disk's SMART summary; (nil, nil) when the disk has
// none (virtio, USB). inventory.SMARTReader implements it.
type SMARTReader interface {
	SMART(disk string) (*inventory.SMART, error)
}

// Name implements Stage.
func (Storage) Name() string { return "storage" }

// smartGrowth lists the SMART counters whose growth during the stage is a
// hardware fault.
var smartGrowth = []string{"reallocated_sectors", "pending_sectors", "offline_uncorrectable",
	"reported_uncorrectable", "media_errors"}

// Run implements Stage.
func (s Storage) Run(ctx context.Context, env Env) ([]verdict.Measurement, error) {
	if s.BlockSize <= 0 {
		s.BlockSize = 1 << 20
	}
	if s.RandomSize <= 0 {
		s.RandomSize = 4096
	}
	if s.QueueDepth <= 0 {
		s.QueueDepth = 8
	}
	if s.BlockSize%4096 != 0 || s.RandomSize%4096 != 0 {
		return nil, fmt.Errorf("block sizes %d and %d must be multiples of 4096 for O_DIRECT", s.BlockSize, s.RandomSize)
	}
	var ms []verdict.Measurement
	for i, t := range s.Targets {
		if ctx.Err() != nil {
			return ms, ctx.Err()
		}
		progress := func(f float64, note string) {
			env.Progress((float64(i)+f)/float64(len(s.Targets)), t.Name+": "+note)
		}
		tm, err := s.target(ctx, env, t, progress)
		ms = append(ms, tm...)
		if err != nil {
			return ms, err
		}
	}
	if len(s.Targets) == 0 {
		env.Logger.Info("no disks to test")
	}
	return ms, nil
}

// mediaError tells a read/write error of the medium (a hardware fault) from
// a tool error.
func mediaError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EILSEQ) ||
		errors.Is(err, unix.EREMOTEIO) || errors.Is(err, unix.EBADMSG)
}

// target measures one disk; the error is only for ctx ending, per-disk tool
// errors become ERROR measurements so the other disks are still measured.
func (s Storage) target(ctx context.Context, env Env, t Target, progress func(float64, string)) ([]verdict.Measurement, error) {
	p := "storage." + t.Name + "."
	var ms []verdict.Measurement
	smartBefore := s.readSMART(env, t)

	fd, direct, err := openDisk(t.Path, unix.O_RDONLY)
	if err != nil {
		return append(ms, verdict.Errored(p+"read", fmt.Errorf("opening %s read-only: %w", t.Path, err))), nil
	}
	size := t.Size
	if size <= 0 {
		if size, err = diskSize(fd); err != nil {
			unix.Close(fd)
			return append(ms, verdict.Errored(p+"read", fmt.Errorf("sizing %s: %w", t.Path, err))), nil
		}
	}
	size &^= 4095
	if size < int64(s.BlockSize) {
		unix.Close(fd)
		return append(ms, verdict.Errored(p+"read", fmt.Errorf("%s holds %d bytes, less than one %d-byte block", t.Path, size, s.BlockSize))), nil
	}

	progress(0, "sequential read")
	seq, err := s.sequentialRead(ctx, fd, size)
	if err != nil {
		unix.Close(fd)
		return append(ms, verdict.Errored(p+"seq_read_mbps", fmt.Errorf("reading %s: %w", t.Path, err))), ctx.Err()
	}
	progress(0.3, "random read")
	rnd, err := s.randomRead(ctx, fd, size)
	unix.Close(fd)
	if err != nil {
		return append(ms, verdict.Errored(p+"rand_read_iops", fmt.Errorf("reading %s: %w", t.Path, err))), ctx.Err()
	}
	seqM := verdict.Measurement{Name: p + "seq_read_mbps", Value: seq.mbps(), Unit: "MB/s", Better: verdict.Higher}
	if !direct {
		seqM.Detail = "O_DIRECT not supported here; the page cache may have served reads"
	}
	ms = append(ms, seqM,
		verdict.Measure(p+"read_errors", float64(seq.errors+rnd.errors), "",
			verdict.Must(verdict.OpEQ, 0, "every block reads without a media error")),
		verdict.Measurement{Name: p + "rand_read_iops", Value: rnd.iops(), Unit: "IOPS", Better: verdict.Higher},
	)
	if len(rnd.lat) > 0 {
		ms = append(ms,
			verdict.Measurement{Name: p + "read_latency_p50_us", Value: rnd.percentile(0.50), Unit: "µs", Better: verdict.Lower},
			verdict.Measurement{Name: p + "read_latency_p99_us", Value: rnd.percentile(0.99), Unit: "µs", Better: verdict.Lower},
			verdict.Measurement{Name: p + "read_latency_p999_us", Value: rnd.percentile(0.999), Unit: "µs"},
			verdict.Measurement{Name: p + "read_latency_max_us", Value: rnd.percentile(1), Unit: "µs"},
		)
	}

	if s.Destructive {
		progress(0.6, "write and verify")
		wm, err := s.writeVerify(ctx, env, t, size)
		ms = append(ms, wm...)
		if err != nil {
			return ms, err
		}
	}
	progress(0.95, "SMART")
	ms = append(ms, s.compareSMART(env, t, smartBefore)...)
	progress(1, "done")
	return ms, nil
}

// openDisk opens with O_DIRECT, falling back to buffered I/O where the
// filesystem refuses it (tmpfs in tests); direct says which it got.
func openDisk(path string, mode int) (fd int, direct bool, err error) {
	fd, err = unix.Open(path, mode|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.Open(path, mode|unix.O_CLOEXEC, 0)
		return fd, false, err
	}
	return fd, err == nil, err
}

func diskSize(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return st.Size, nil
	}
	var n uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, fmt.Errorf("BLKGETSIZE64: %w", errno)
	}
	return int64(n), nil
}

// alignedBuf returns a 4096-aligned buffer for O_DIRECT (Go's heap does not
// move objects).
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := int((4096 - uintptr(unsafe.Pointer(&b[0]))%4096) % 4096)
	return b[off : off+n : off+n]
}

type ioStats struct {
	bytes   int64
	ops     int64
	errors  int64
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (st ioStats) mbps() float64 {
	if st.elapsed <= 0 {
		return 0
	}
	return float64(st.bytes) / st.elapsed.Seconds() / 1e6
}

func (st ioStats) iops() float64 {
	if st.elapsed <= 0 {
		return 0
	}
	return float64(st.ops) / st.elapsed.Seconds()
}

// percentile returns the q-quantile latency in microseconds (q=1: maximum).
func (st ioStats) percentile(q float64) float64 {
	if len(st.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(st.lat)-1))
	return float64(st.lat[i].Nanoseconds()) / 1e3
}

// sequentialRead reads from the start for Duration or to the end.
func (s Storage) sequentialRead(ctx context.Context, fd int, size int64) (ioStats, error) {
	buf := alignedBuf(s.BlockSize)
	var st ioStats
	start := time.Now()
	deadline := start.Add(s.Duration)
	for off := int64(0); off < size && ctx.Err() == nil && time.Now().Before(deadline); {
		n := int64(len(buf))
		if off+n > size {
			n = size - off
		}
		got, err := unix.Pread(fd, buf[:n], off)
		switch {
		case err != nil && mediaError(err):
			st.errors++
			off += n // skip the bad block and go on
			continue
		case err != nil:
			return st, err
		case got == 0:
			off = size
			continue
		}
		st.bytes += int64(got)
		st.ops++
		off += int64(got)
	}
	st.elapsed = time.Since(start)
	return st, nil
}

// randomRead issues QueueDepth concurrent reads at random aligned offsets for
// Duration, recording every latency.
func (s Storage) randomRead(ctx context.Context, fd int, size int64) (ioStats, error) {
	blocks := size / int64(s.RandomSize)
	start := time.Now()
	deadline := start.Add(s.Duration)
	var mu sync.Mutex
	// total and firstErr are guarded by mu.
	var total ioStats
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < s.QueueDepth; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := alignedBuf(s.RandomSize)
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			var st ioStats
			for ctx.Err() == nil && time.Now().Before(deadline) && len(st.lat) < 1<<20 {
				off := rng.Int64N(blocks) * int64(s.RandomSize)
				t0 := time.Now()
				_, err := unix.Pread(fd, buf, off)
				d := time.Since(t0)
				if err != nil {
					if mediaError(err) {
						st.errors++
						continue
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				st.ops++
				st.bytes += int64(len(buf))
				st.lat = append(st.lat, d)
			}
			mu.Lock()
			total.ops += st.ops
			total.bytes += st.bytes
			total.errors += st.errors
			total.lat = append(total.lat, st.lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	sort.Slice(total.lat, func(i, j int) bool { return total.lat[i] < total.lat[j] })
	return total, firstErr
}

// fillBlock writes block b's pattern for this run's seed.
func fillBlock(buf []byte, seed uint64, b int64) {
	x := seed ^ uint64(b)*0x9e3779b97f4a7c15
	for i := 0; i+8 <= len(buf); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(buf[i:], z^z>>31)
	}
}

// writeVerify overwrites the start of the disk with a per-run pattern for up
// to Duration (or WriteBytes), syncs, and reads it all back.
func (s Storage) writeVerify(ctx context.Context, env Env, t Target, size int64) ([]verdict.Measurement, error) {
	p := "storage." + t.Name + "."
	fd, _, err := openDisk(t.Path, unix.O_RDWR)
	if err != nil {
		return []verdict.Measurement{verdict.Errored(p+"write_mbps", fmt.Errorf("opening %s for writing: %w", t.Path, err))}, nil
	}
	defer unix.Close(fd)
	region := size
	if s.WriteBytes > 0 && s.WriteBytes < region {
		region = s.WriteBytes &^ 4095
	}
	seed := uint64(env.Now().UnixNano())
	buf := alignedBuf(s.BlockSize)
	var written, writeErrors int64
	start := time.Now()
	deadline := start.Add(s.Duration)
	for off := int64(0); off < region && ctx.Err() == nil && time.Now().Before(deadline); {
		n := min(int64(len(buf)), region-off)
		fillBlock(buf[:n], seed, off/int64(s.BlockSize))
		if _, err := unix.Pwrite(fd, buf[:n], off); err != nil {
			if !mediaError(err) {
				return []verdict.Measurement{verdict.Errored(p+"write_mbps", fmt.Errorf("writing %s: %w", t.Path, err))}, ctx.Err()
			}
			writeErrors++
		}
		off += n
		written = off
	}
	if err := unix.Fdatasync(fd); err != nil && !mediaError(err) {
		return []verdict.Measurement{verdict.Errored(p+"write_mbps", fmt.Errorf("syncing %s: %w", t.Path, err))}, ctx.Err()
	} else if err != nil {
		writeErrors++
	}
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	want := alignedBuf(s.BlockSize)
	var verifyErrors int64
	for off := int64(0); off < written && ctx.Err() == nil; {
		n := min(int64(len(buf)), written-off)
		fillBlock(want[:n], seed, off/int64(s.BlockSize))
		got, err := unix.Pread(fd, buf[:n], off)
		switch {
		case err != nil && !mediaError(err):
			return []verdict.Measurement{verdict.Errored(p+"verify_errors", fmt.Errorf("reading back %s: %w", t.Path, err))}, ctx.Err()
		case err != nil || int64(got) != n || string(buf[:n]) != string(want[:n]):
			verifyErrors++
		}
		off += n
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return []verdict.Measurement{
		{Name: p + "write_mbps", Value: float64(written) / elapsed.Seconds() / 1e6, Unit: "MB/s", Better: verdict.Higher},
		{Name: p + "bytes_written", Value: float64(written), Unit: "bytes"},
		verdict.Measure(p+"write_errors", float64(writeErrors), "", verdict.Must(verdict.OpEQ, 0, "every block writes without a media error")),
		verdict.Measure(p+"verify_errors", float64(verifyErrors), "blocks", verdict.Must(verdict.OpEQ, 0, "every written block reads back unchanged")),
	}, nil
}

type smartSample struct {
	s   *inventory.SMART
	err error
}

func (s Storage) readSMART(env Env, t Target) smartSample {
	if s.SMART == nil {
		return smartSample{}
	}
	sm, err := s.SMART.SMART(t.Name)
	return smartSample{sm, err}
}

// compareSMART judges SMART health after the stage and the growth of defect
// counters during it.
func (s Storage) compareSMART(env Env, t Target, before smartSample) []verdict.Measurement {
	p := "storage." + t.Name + ".smart_"
	if s.SMART == nil {
		return []verdict.Measurement{verdict.Skip(p+"health", "SMART not read in this run")}
	}
	after := s.readSMART(env, t)
	switch {
	case before.err != nil:
		return []verdict.Measurement{verdict.Errored(p+"health", fmt.Errorf("reading SMART before the stage: %w", before.err))}
	case after.err != nil:
		return []verdict.Measurement{verdict.Errored(p+"health", fmt.Errorf("reading SMART after the stage: %w", after.err))}
	case before.s == nil || after.s == nil:
		return []verdict.Measurement{verdict.Skip(p+"health", "the disk offers no SMART data (virtio, USB or a RAID volume)")}
	}
	healthy := 0.0
	if after.s.Health == "PASSED" {
		healthy = 1
	}
	ms := []verdict.Measurement{verdict.Measure(p+"health", healthy, "",
		verdict.Must(verdict.OpEQ, 1, "the drive's own health assessment is PASSED"))}
	for _, c := range smartGrowth {
		b, okB := before.s.Counters[c]
		a, okA := after.s.Counters[c]
		if okA && okB {
			ms = append(ms, verdict.Measure(p+c+"_growth", float64(a-b), "",
				verdict.Must(verdict.OpEQ, 0, "no new defects during the stage")))
		}
	}
	return ms
}
