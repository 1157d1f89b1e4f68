package boottest

import (
	"bytes"
	"context"
	"crypto/sha256"
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

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

// bootToReady waits for the stage-1 marker, PID 1 and "kiln: ready" and
// returns the slot stage 1 reported.
func bootToReady(t *testing.T, ctx context.Context, vm *qemu.VM) string {
	t.Helper()
	l, err := vm.Expect(ctx, Stage1RE, BootTimeout())
	if err != nil {
		t.Fatal(err)
	}
	slot := Stage1RE.FindStringSubmatch(l)[1]
	if _, err := vm.Expect(ctx, InitRE, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(ctx, ReadyRE, BootTimeout()); err != nil {
		t.Fatal(err)
	}
	return slot
}

// get fetches url with the management client, retrying transport errors for
// up to 30 s (slirp forwards before the guest listens).
func get(t *testing.T, ctx context.Context, url string) (*http.Response, []byte) {
	t.Helper()
	c := HTTPClient()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return resp, body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tryCertFingerprint returns the SHA-256 of the management TLS certificate,
// trying for up to 30 s.
func tryCertFingerprint(ctx context.Context, vm *qemu.VM) (string, error) {
	c := HTTPClient()
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", vm.HTTPSPort())
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
				return "", fmt.Errorf("GET %s: no TLS certificate", url)
			}
			sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
			return hex.EncodeToString(sum[:]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("GET %s: %w", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestBootReady: the image boots to "kiln: ready" from slot a and serves
// /healthz over HTTPS and HTTP, redirecting other HTTP paths to HTTPS.
func TestBootReady(t *testing.T) {
	img := Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*BootTimeout())
	defer cancel()
	vm := NewVM(t, ctx, img, VMOptions{})
	if slot := bootToReady(t, ctx, vm); slot != "a" {
		t.Errorf("fresh image booted slot %s, want a", slot)
	}
	t.Logf("ready %.1fs after QEMU started", time.Since(vm.Started()).Seconds())

	https := fmt.Sprintf("https://127.0.0.1:%d", vm.HTTPSPort())
	http_ := fmt.Sprintf("http://127.0.0.1:%d", vm.HTTPPort())
	if resp, body := get(t, ctx, https+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET https /healthz = %d %q, want 200", resp.StatusCode, body)
	}
	if resp, body := get(t, ctx, http_+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET http /healthz = %d %q, want 200", resp.StatusCode, body)
	}
	resp, _ := get(t, ctx, http_+"/api/v1/status")
	if loc := resp.Header.Get("Location"); resp.StatusCode < 300 || resp.StatusCode > 399 || !strings.HasPrefix(loc, "https://") {
		t.Errorf("GET http /api/v1/status = %d Location %q, want a redirect to https://", resp.StatusCode, loc)
	}
	checkMetrics(t, ctx, https, Login(t, ctx, vm, https))
}

// checkMetrics scrapes GET /metrics once: the image's services all serve
// their metrics, and the OTA families describe the fresh image in slot a.
func checkMetrics(t *testing.T, ctx context.Context, base, cookie string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %s, want 200:\n%s", resp.Status, body)
	}
	fams := metricstest.Parse(t, body)
	for _, c := range []struct {
		fam  string
		kv   []string
		want float64
	}{
		{"kiln_supervisor_ready", nil, 1},
		{"kiln_service_state", []string{"service", "mgmt", "state", "ready"}, 1},
		{metrics.SourceUpFamily, []string{"source", "mgmt"}, 1},
		{"kiln_ota_available", nil, 1},
		{"kiln_ota_slot_running", []string{"slot", "a"}, 1},
		{"kiln_ota_slot_committed", []string{"slot", "a"}, 1},
		{"kiln_ota_slot_state", []string{"slot", "b", "state", "empty"}, 1},
	} {
		if got := fams.Value(c.fam, c.kv...); got != c.want {
			t.Errorf("GET /metrics: %s%v = %v, want %v", c.fam, c.kv, got, c.want)
		}
	}
	for _, m := range fams[metrics.SourceUpFamily].GetMetric() {
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("GET /metrics: %s of %v = 0: a running service's metrics are unreachable", metrics.SourceUpFamily, m.GetLabel())
		}
	}
	if avail := fams.Value("kiln_data_avail_bytes"); !(avail > 0) {
		t.Errorf("GET /metrics: kiln_data_avail_bytes = %v, want > 0 (the data partition)", avail)
	}
}

// TestDataSurvivesReboot writes a file to /data from the recovery shell,
// leaves the shell (the menu must come back on the serial line the shell's
// exit hung up), reboots with menu item 7 and reads the file back from the
// shell after the reboot; the management TLS certificate, generated on first
// boot under /data, must also be the same after the reboot.
func TestDataSurvivesReboot(t *testing.T) {
	img := Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*BootTimeout())
	defer cancel()
	vm := NewVM(t, ctx, img, VMOptions{})
	bootToReady(t, ctx, vm)
	cert1, err := tryCertFingerprint(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}

	r := NewRecovery(t, ctx, vm)
	r.Menu()
	r.Shell()
	r.Run("echo kiln-persist-$((6*7)) > /data/kiln-persist.txt; sync")
	r.ExitShell()
	r.Reboot()
	if _, err := vm.Expect(ctx, RebootRE, time.Minute); err != nil {
		t.Fatal(err)
	}
	bootToReady(t, ctx, vm)
	r.Menu()
	r.Shell()
	r.Run("cat /data/kiln-persist.txt")
	// The cursor is past the typed command; only the file's content matches.
	found := false
	lines := vm.Lines()
	for i := len(lines) - 1; i >= 0 && i > len(lines)-20; i-- {
		if strings.TrimSpace(lines[i].Text) == "kiln-persist-42" {
			found = true
		}
	}
	if !found {
		t.Errorf("/data/kiln-persist.txt after reboot does not hold kiln-persist-42\n%s", vm.ConsoleTail())
	}
	cert2, err := tryCertFingerprint(ctx, vm)
	switch {
	case err != nil:
		t.Errorf("management port unreachable after a warm reboot: %v (recovery menu item 2 shows eth0's addresses; KILN_MGMT_PCAP=file captures the NIC)", err)
	case cert2 != cert1:
		t.Errorf("TLS certificate after reboot = %s, want the first boot's %s (state under /data lost?)", cert2, cert1)
	}
}

// apiStatus is the part of the supervisor status the tests read.
type apiStatus struct {
	Ready    bool `json:"ready"`
	Services []struct {
		Name     string `json:"name"`
		Enabled  bool   `json:"enabled"`
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Restarts int    `json:"restarts"`
		LastExit string `json:"last_exit"`
	} `json:"services"`
}

func status(t *testing.T, ctx context.Context, vm *qemu.VM) apiStatus {
	t.Helper()
	resp, body := get(t, ctx, fmt.Sprintf("https://127.0.0.1:%d/api/v1/status", vm.HTTPSPort()))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/status = %d %q", resp.StatusCode, body)
	}
	var st apiStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET /api/v1/status: %v in %q", err, body)
	}
	return st
}

// severalServices turns on services that need no provisioning NIC, so the
// kill test has bystanders whose PIDs must not change.
const severalServices = `hostname: kiln
services:
  dns: {enabled: true}
  tftp: {enabled: true}
  httpboot: {enabled: true}
  ntp: {enabled: true}
`

// ntpAnswerRE is kiln ntp query's line for the appliance's own server.
var ntpAnswerRE = regexp.MustCompile(`NTP server 127\.0\.0\.1:123: (.*)`)

// TestServiceRestartAfterKill kills one service with SIGKILL from the
// recovery shell; the supervisor restarts it and the others keep their PIDs.
// Before that, from the same shell, the image's NTP server answers `kiln ntp
// query`, as unsynchronized (the VM has no upstream server).
func TestServiceRestartAfterKill(t *testing.T) {
	img := Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*BootTimeout())
	defer cancel()
	vm := NewVM(t, ctx, img, VMOptions{Config: severalServices})
	bootToReady(t, ctx, vm)

	before := status(t, ctx, vm)
	pids := map[string]int{}
	victim := ""
	for _, s := range before.Services {
		if s.PID == 0 {
			continue
		}
		pids[s.Name] = s.PID
		// Prefer a service other than mgmt, which answers the status API.
		if victim == "" || victim == "mgmt" {
			victim = s.Name
		}
	}
	if victim == "" || len(pids) < 3 {
		t.Fatalf("want at least 3 running services (one to kill, bystanders to watch): %+v", before)
	}
	t.Logf("killing %s (pid %d); running: %v", victim, pids[victim], pids)

	r := NewRecovery(t, ctx, vm)
	r.Menu()
	r.Shell()
	r.settle()
	r.send("kiln ntp query 127.0.0.1\r")
	if l := r.expect(ntpAnswerRE, 30*time.Second); !strings.Contains(l, "leap indicator 3, stratum 16") {
		t.Errorf("kiln ntp query 127.0.0.1 in the image: %q, want an unsynchronized answer (leap indicator 3, stratum 16)", l)
	}
	r.Run(fmt.Sprintf("kill -9 %d", pids[victim]))

	deadline := time.Now().Add(time.Minute)
	for {
		after := status(t, ctx, vm)
		var problems []string
		restarted := false
		for _, s := range after.Services {
			old, ok := pids[s.Name]
			switch {
			case !ok:
			case s.Name == victim:
				if s.PID != 0 && s.PID != old && s.State == "ready" && s.Restarts >= 1 {
					restarted = true
				} else {
					problems = append(problems, fmt.Sprintf("%s: state %s pid %d restarts %d last exit %q", s.Name, s.State, s.PID, s.Restarts, s.LastExit))
				}
			case s.PID != old:
				t.Fatalf("%s changed PID %d → %d when %s was killed", s.Name, old, s.PID, victim)
			}
		}
		if restarted && after.Ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not restarted within a minute: %v (system ready %v)", victim, problems, after.Ready)
		}
		time.Sleep(time.Second)
	}
}

// TestPoweroffLeavesCleanData presses the ACPI power button; PID 1 must
// reach poweroff, QEMU must exit, and the data partition (grown to fill the
// 2 GiB disk) must pass e2fsck.
func TestPoweroffLeavesCleanData(t *testing.T) {
	img := Image(t)
	for _, tool := range []string{"e2fsck", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install e2fsprogs gdisk)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*BootTimeout())
	defer cancel()
	overlay := NewOverlay(t, img, "2G")
	vm := NewVM(t, ctx, img, VMOptions{Disk: overlay})
	bootToReady(t, ctx, vm)

	sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
	defer scancel()
	if err := vm.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(ctx, PoweroffRE, time.Second); err != nil {
		t.Fatal(err)
	}
	vm.Close()

	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := qemu.ConvertRaw(ctx, overlay, raw); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "sgdisk", "-v", raw).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk -v after first boot: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data.ext4")
	p, err := extractData(raw, data)
	if err != nil {
		t.Fatal(err)
	}
	if end := p.Offset() + p.Size(); end < (2<<30)-(2<<20) {
		t.Errorf("data partition ends at %d MiB, want it grown to the end of the 2048 MiB disk", end>>20)
	}
	out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-n", data).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -f -n on the data partition: %v\n%s", err, out)
	}
	t.Logf("e2fsck: %s", bytes.TrimSpace(out))
}

// extractData copies the data partition (GPT index 4) of a raw disk to dst.
func extractData(raw, dst string) (qemu.GPTPartition, error) {
	return qemu.ExtractPartition(raw, 4, dst)
}

// TestUsedUpEntryIsIgnored adds a newer boot entry for slot b whose tries are
// used up (kiln-2+0-3.conf): systemd-boot must skip it and boot slot a. The
// control case, the same entry with one try left, must boot slot b, which
// proves the entry itself is bootable.
func TestUsedUpEntryIsIgnored(t *testing.T) {
	img := Image(t)
	for _, tt := range []struct {
		entry    string
		wantSlot string
	}{
		{"kiln-2+0-3.conf", "a"},
		{"kiln-2+1-0.conf", "b"},
	} {
		t.Run(tt.entry, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*BootTimeout())
			defer cancel()
			raw, parts, entryB := withSlotBEntry(t, ctx, img, tt.entry)
			vm := NewVM(t, ctx, img, VMOptions{Disk: NewOverlay(t, raw, "")})
			l, err := vm.Expect(ctx, Stage1RE, BootTimeout())
			if err != nil {
				t.Fatal(err)
			}
			m := Stage1RE.FindStringSubmatch(l)
			want := parts[2]
			if tt.wantSlot == "b" {
				want = parts[3]
			}
			if m[1] != tt.wantSlot || !strings.EqualFold(m[2], want.UUID) {
				t.Errorf("stage 1 says %q, want slot %s root PARTUUID=%s\nentry:\n%s", l, tt.wantSlot, want.UUID, entryB)
			}
		})
	}
}

// withSlotBEntry copies img to a raw disk whose ESP gains a generation-2
// entry for slot b named name (the image's entry turned to slot b), and
// returns the disk, its partitions and the entry's text.
func withSlotBEntry(t *testing.T, ctx context.Context, img, name string) (string, map[int]qemu.GPTPartition, string) {
	t.Helper()
	for _, tool := range []string{"mcopy", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install mtools)", tool)
		}
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if err := qemu.ConvertRaw(ctx, img, raw); err != nil {
		t.Fatal(err)
	}
	parts := gpt(t, raw)
	esp := fmt.Sprintf("%s@@%d", raw, parts[1].Offset())
	entryA, err := exec.CommandContext(ctx, "mtype", "-i", esp, "::/loader/entries/kiln-1.conf").Output()
	if err != nil {
		t.Fatalf("reading the image's kiln-1.conf: %v", err)
	}
	entryB := slotBEntry(string(entryA), parts[3].UUID)
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte(entryB), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "mcopy", "-i", esp, src, "::/loader/entries/"+name).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v: %s", err, out)
	}
	return raw, parts, entryB
}

// gpt reads the partitions of a raw disk, indexed by GPT index.
func gpt(t *testing.T, raw string) map[int]qemu.GPTPartition {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps, err := qemu.ReadGPT(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]qemu.GPTPartition{}
	for _, p := range ps {
		out[p.Index] = p
	}
	for i := 1; i <= 4; i++ {
		if _, ok := out[i]; !ok {
			t.Fatalf("%s has no partition %d: %+v", raw, i, ps)
		}
	}
	return out
}

// slotBEntry turns the image's slot-a entry into a generation-2 slot-b entry.
func slotBEntry(a, rootB string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.ReplaceAll(a, "\r\n", "\n"), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "title":
			line = "title kiln 2 (slot b)"
		case "version":
			line = "version 00000002"
		case "linux", "initrd":
			line = k + " " + strings.Replace(strings.TrimSpace(v), "/kiln/a/", "/kiln/b/", 1)
		case "options":
			var opts []string
			for _, o := range strings.Fields(v) {
				switch {
				case strings.HasPrefix(o, "root="):
					o = "root=PARTUUID=" + strings.ToLower(rootB)
				case o == "kiln.slot=a":
					o = "kiln.slot=b"
				}
				opts = append(opts, o)
			}
			line = "options " + strings.Join(opts, " ")
		}
		if line != "" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
