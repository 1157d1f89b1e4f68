package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ImageInfo is what qemu-img reports about a disk image.
type ImageInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	BackingFile string `json:"backing-filename"`
}

// Inspect runs `qemu-img info` on path.
func Inspect(ctx context.Context, path string) (ImageInfo, error) {
	out, err := qemuImg(ctx, "info", "--output=json", "-U", path)
	if err != nil {
		return ImageInfo{}, err
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("reading qemu-img info of %s: %w", path, err)
	}
	return info, nil
}

// CreateOverlay creates a qcow2 overlay backed by base, so the VM never writes
// to base. If size is not empty ("2G", "4096M") the overlay is that large; the
// extra space appears past the end of base's disk (first boot grows into it).
func CreateOverlay(ctx context.Context, base, overlay, size string) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("creating overlay: %w", err)
	}
	info, err := Inspect(ctx, abs)
	if err != nil {
		return fmt.Errorf("creating overlay on %s: %w", base, err)
	}
	args := []string{"create", "-q", "-f", "qcow2", "-b", abs, "-F", info.Format, overlay}
	if size != "" {
		args = append(args, size)
	}
	if _, err := qemuImg(ctx, args...); err != nil {
		return fmt.Errorf("creating overlay on %s: %w", base, err)
	}
	return nil
}

// ConvertRaw writes the disk contents of src (any format, following backing
// files) to dst as a sparse raw image.
func ConvertRaw(ctx context.Context, src, dst string) error {
	if _, err := qemuImg(ctx, "convert", "-U", "-O", "raw", src, dst); err != nil {
		return fmt.Errorf("converting %s to raw: %w", src, err)
	}
	return nil
}

func qemuImg(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ExtractPartition copies GPT partition index (1-based) of the raw image img to
// dst, leaving all-zero blocks as holes so a mostly empty data partition costs
// little disk and time.
func ExtractPartition(img string, index int, dst string) (GPTPartition, error) {
	f, err := os.Open(img)
	if err != nil {
		return GPTPartition{}, fmt.Errorf("extracting partition %d: %w", index, err)
	}
	defer f.Close()
	parts, err := ReadGPT(f)
	if err != nil {
		return GPTPartition{}, fmt.Errorf("extracting partition %d of %s: %w", index, img, err)
	}
	var p *GPTPartition
	for i := range parts {
		if parts[i].Index == index {
			p = &parts[i]
		}
	}
	if p == nil {
		return GPTPartition{}, fmt.Errorf("extracting partition %d of %s: no such partition", index, img)
	}
	out, err := os.Create(dst)
	if err != nil {
		return GPTPartition{}, fmt.Errorf("extracting partition %d: %w", index, err)
	}
	if err := sparseCopy(out, io.NewSectionReader(f, p.Offset(), p.Size())); err != nil {
		out.Close()
		return GPTPartition{}, fmt.Errorf("extracting partition %d of %s: %w", index, img, err)
	}
	if err := out.Close(); err != nil {
		return GPTPartition{}, fmt.Errorf("extracting partition %d: %w", index, err)
	}
	return *p, nil
}

// sparseCopy copies r to f, seeking over all-zero 64 KiB blocks.
func sparseCopy(f *os.File, r io.Reader) error {
	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if isZero(buf[:n]) {
				if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return f.Truncate(size)
		}
		if err != nil {
			return err
		}
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
