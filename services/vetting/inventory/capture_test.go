package inventory_test

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"testing"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/inventory/internal/capture"
)

var captureHost = flag.Bool("capture", false, "capture this machine's sysfs/procfs reads into testdata/host")

// TestCapture copies what Collect reads on this machine into testdata/host
// (go test -run TestCapture -capture): only the files the inventory reads —
// sysfs attributes and links, proc/cpuinfo, proc/meminfo and, when readable,
// the raw DMI table — plus the answers of NVMe and ATA commands.
func TestCapture(t *testing.T) {
	if !*captureHost {
		t.Skip("capturing this machine only with -capture")
	}
	var buf bytes.Buffer
	dev := inventory.Devices{Dir: "/dev"}
	if _, err := capture.Machine(context.Background(), &buf, "/", dev, dev); err != nil {
		t.Fatal(err)
	}
	if err := capture.Unpack(&buf, filepath.Join("testdata", "host")); err != nil {
		t.Fatal(err)
	}
}
